// The peer the benchmark compares the product with: the Socket.IO queue
// pattern. A send is acked at once with a temp id and handed to a BullMQ
// queue; worker.js writes it to PostgreSQL and emits `message:persisted`
// to the room through the Redis emitter. Rooms and their events go through
// the Redis adapter, so several of these servers can share the load.
//
//   REDIS_URL=redis://127.0.0.1:6379 PORT=3000 node server.js
//
// Events (Socket.IO, acks by callback), named as the product's frames:
//   room:join {room} -> ack {room}
//   message:send {room, text} -> ack {temp_id} | {error: {code}}
//   <- message:persisted {temp_id, message}
import { createServer } from "node:http";
import { randomUUID } from "node:crypto";
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/redis-adapter";
import { Redis } from "ioredis";
import { Queue } from "bullmq";

const port = Number(process.env.PORT ?? 3000);
const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

const pub = new Redis(redisUrl);
const sub = pub.duplicate();
const queue = new Queue("messages", {
  connection: new Redis(redisUrl, { maxRetriesPerRequest: null }),
  defaultJobOptions: { removeOnComplete: true, removeOnFail: 1000, attempts: 5 },
});

const http = createServer((req, res) => {
  res.writeHead(req.url === "/readyz" ? 200 : 404).end();
});
const io = new Server(http, {
  adapter: createAdapter(pub, sub),
  transports: ["websocket"],
  serveClient: false,
});

io.on("connection", (socket) => {
  const name = String(socket.handshake.auth?.name ?? "guest").slice(0, 64);
  const sender = { id: randomUUID(), name };
  socket.on("room:join", (data, ack) => {
    const room = String(data?.room ?? "");
    if (!room) return ack?.({ error: { code: "bad_request" } });
    socket.join(room);
    ack?.({ room });
  });
  socket.on("message:send", (data, ack) => {
    const room = String(data?.room ?? "");
    const text = String(data?.text ?? "");
    if (typeof ack !== "function") return;
    if (!socket.rooms.has(room)) return ack({ error: { code: "not_a_member" } });
    if (!text || text.length > 4000) return ack({ error: { code: "bad_request" } });
    const temp_id = randomUUID();
    ack({ temp_id });
    queue
      .add("persist", { temp_id, room, sender, text, at: new Date().toISOString() })
      .catch((err) => console.error("queue add failed", temp_id, err.message));
  });
});

http.listen(port, "127.0.0.1", () => console.log(`peer server on ${port}`));
