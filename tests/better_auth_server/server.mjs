// A real Better Auth server for the template's end-to-end tests.
//
// Configured only from the environment, so one script serves every case the tests need:
//
//   PORT                  port to listen on (127.0.0.1 only)
//   DATABASE_URL          PostgreSQL URL; Better Auth's own migrator creates its tables there
//   BETTER_AUTH_SECRET    secret for cookies and for encrypting the private keys
//   BA_GENERATE_ID        advanced.database.generateId: unset (random strings), uuid or serial
//   BA_JWT_ALG            jwt() key algorithm: EdDSA (default), ES256, ES512, PS256, RS256
//   BA_JWKS_PATH          jwks.jwksPath, e.g. /.well-known/jwks.json (default /jwks)
//   BA_ROTATION_SECONDS   jwks.rotationInterval: a new key once the current one is this old
//   BA_GRACE_SECONDS      jwks.gracePeriod: how long an expired key stays listed
//
// The base URL is http://127.0.0.1:PORT, which Better Auth puts in each token's iss and aud.
// Once the tables exist and the port is bound, one line goes to stdout: "ready <base URL>".

import http from "node:http";

import { betterAuth } from "better-auth";
import { getMigrations } from "better-auth/db/migration";
import { toNodeHandler } from "better-auth/node";
import { jwt } from "better-auth/plugins";
import pg from "pg";

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is not set`);
    process.exit(2);
  }
  return value;
}

function seconds(name) {
  const raw = process.env[name];
  if (!raw) return undefined;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) {
    console.error(`${name} must be a positive number of seconds, not ${raw}`);
    process.exit(2);
  }
  return value;
}

const port = Number(required("PORT"));
const baseURL = `http://127.0.0.1:${port}`;
const generateId = process.env.BA_GENERATE_ID || undefined;
if (generateId !== undefined && generateId !== "uuid" && generateId !== "serial") {
  console.error(`BA_GENERATE_ID must be unset, uuid or serial, not ${generateId}`);
  process.exit(2);
}
const alg = process.env.BA_JWT_ALG || "EdDSA";
const curves = { EdDSA: "Ed25519", ES256: "P-256", ES512: "P-521" };

const pool = new pg.Pool({ connectionString: required("DATABASE_URL"), max: 5 });

const options = {
  baseURL,
  secret: required("BETTER_AUTH_SECRET"),
  database: pool,
  emailAndPassword: { enabled: true },
  user: { deleteUser: { enabled: true } },
  advanced: { database: generateId ? { generateId } : {} },
  // Tests sign up and call in quick succession from one address.
  rateLimit: { enabled: false },
  telemetry: { enabled: false },
  plugins: [
    jwt({
      jwks: {
        keyPairConfig: curves[alg] ? { alg, crv: curves[alg] } : { alg },
        jwksPath: process.env.BA_JWKS_PATH || undefined,
        rotationInterval: seconds("BA_ROTATION_SECONDS"),
        gracePeriod: seconds("BA_GRACE_SECONDS"),
      },
    }),
  ],
};

// What `npx auth migrate` does for the built-in Kysely adapter: create the missing tables
// and columns for this configuration, plugins included.
const { runMigrations } = await getMigrations(options);
await runMigrations();

const auth = betterAuth(options);
const server = http.createServer(toNodeHandler(auth));

async function shutdown() {
  server.close();
  await pool.end();
  process.exit(0);
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);

server.listen(port, "127.0.0.1", () => {
  console.log(`ready ${baseURL}`);
});
