"""Development helpers: never imported by the app, never copied into the Docker image."""
