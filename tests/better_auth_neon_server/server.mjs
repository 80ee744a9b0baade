// Better Auth 1.4.18 configured as Neon Auth runs it, for the template's end-to-end tests.
//
// What Neon Auth does, checked against Neon's docs and a live project (2026-12): Better Auth
// 1.4.18 keeps its tables in the `neon_auth` schema of the branch's database, with uuid ids
// and the jwt, admin and organization plugins; its routes live under /neondb/auth, its keys
// at /neondb/auth/.well-known/jwks.json, and tokens carry iss = aud = the origin.
//
//   PORT                  port to listen on (127.0.0.1 only)
//   DATABASE_URL          PostgreSQL URL; Better Auth's migrator creates its tables in neon_auth
//   BETTER_AUTH_SECRET    secret for cookies and for encrypting the private keys
//
// Once the tables exist and the port is bound, one line goes to stdout: "ready <origin>".

import http from "node:http";

import { betterAuth } from "better-auth";
import { getMigrations } from "better-auth/db";
import { toNodeHandler } from "better-auth/node";
import { admin, jwt, organization } from "better-auth/plugins";
import pg from "pg";

const SCHEMA = "neon_auth";
const BASE_PATH = "/neondb/auth";

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is not set`);
    process.exit(2);
  }
  return value;
}

const port = Number(required("PORT"));
const origin = `http://127.0.0.1:${port}`;
const connectionString = required("DATABASE_URL");

// Better Auth names no schema in its queries: the connection's search_path puts every table,
// and its 1.4 migrator's inspection (SHOW search_path), in neon_auth.
const setup = new pg.Client({ connectionString });
await setup.connect();
await setup.query(`CREATE SCHEMA IF NOT EXISTS ${SCHEMA}`);
await setup.end();
const pool = new pg.Pool({ connectionString, options: `-c search_path=${SCHEMA}`, max: 5 });

const options = {
  baseURL: origin,
  basePath: BASE_PATH,
  secret: required("BETTER_AUTH_SECRET"),
  database: pool,
  emailAndPassword: { enabled: true },
  user: { deleteUser: { enabled: true } },
  advanced: { database: { generateId: "uuid" } },
  // Tests sign up and call in quick succession from one address.
  rateLimit: { enabled: false },
  telemetry: { enabled: false },
  plugins: [jwt({ jwks: { jwksPath: "/.well-known/jwks.json" } }), admin(), organization()],
};

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
  console.log(`ready ${origin}`);
});
