// The peer's persistence worker: takes the BullMQ jobs server.js adds,
// inserts each message into PostgreSQL, and emits `message:persisted` to
// the room's sockets on every server through the Redis emitter.
//
//   REDIS_URL=... DATABASE_URL=postgres://... CONCURRENCY=32 node worker.js
import { Worker } from "bullmq";
import { Redis } from "ioredis";
import { Emitter } from "@socket.io/redis-emitter";
import pg from "pg";

const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const concurrency = Number(process.env.CONCURRENCY ?? 32);
const pool = new pg.Pool({
  connectionString: process.env.DATABASE_URL,
  max: Number(process.env.PG_POOL ?? 16),
});

await pool.query(`CREATE TABLE IF NOT EXISTS messages (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  room text NOT NULL,
  sender_id uuid NOT NULL,
  sender_name text NOT NULL,
  text text NOT NULL,
  temp_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now())`);
await pool.query("CREATE INDEX IF NOT EXISTS messages_temp_id ON messages (temp_id)");
await pool.query("CREATE INDEX IF NOT EXISTS messages_room ON messages (room, created_at)");

const emitter = new Emitter(new Redis(redisUrl));

const worker = new Worker(
  "messages",
  async (job) => {
    const { temp_id, room, sender, text } = job.data;
    const { rows } = await pool.query(
      `INSERT INTO messages (room, sender_id, sender_name, text, temp_id)
       VALUES ($1, $2, $3, $4, $5) RETURNING id, created_at`,
      [room, sender.id, sender.name, text, temp_id],
    );
    const message = {
      id: rows[0].id, room, sender, kind: "text", text, temp_id,
      created_at: rows[0].created_at,
    };
    emitter.to(room).emit("message:persisted", { temp_id, message });
  },
  { connection: new Redis(redisUrl, { maxRetriesPerRequest: null }), concurrency },
);
worker.on("failed", (job, err) => console.error("job failed", job?.id, err.message));
console.log(`peer worker, concurrency ${concurrency}`);
