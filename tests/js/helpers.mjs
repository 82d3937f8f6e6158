// Shared helpers of the node --test files of the JS client (tests/js/*.test.mjs).
//
// tests/test_js_client.py starts the servers and passes them in the environment:
//   THINWS_URLS        JSON array of 3 WebSocket URLs of demo_project instances "a", "b", "c"
//                      under the test profile (anonymous connects open, no rate limit)
//   THINWS_PIDS        JSON array of their process ids (tests kill "c" and pause "b")
//   THINWS_SECURE_URL  one instance under the secure defaults (tokens required)
//   THINWS_TOKENS      JSON {name: {connectionID, token}}: tokens valid on THINWS_SECURE_URL
// Every wait is bounded by WAIT ms; nothing asserts how long something took.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import http from "node:http";
import net from "node:net";

export { ThinWSClient, ThinWSError } from "../../thinws_channels/static/thinws_channels/thinws.mjs";
import { ThinWSClient } from "../../thinws_channels/static/thinws_channels/thinws.mjs";

export const WAIT = 20000;

/** The servers started by tests/test_js_client.py; throws when run without it. */
export function servers() {
  const names = ["THINWS_URLS", "THINWS_PIDS", "THINWS_SECURE_URL", "THINWS_TOKENS"];
  const missing = names.filter((name) => !process.env[name]);
  if (missing.length) {
    throw new Error(`${missing.join(", ")} not set: run these tests with pytest tests/test_js_client.py`);
  }
  return {
    urls: JSON.parse(process.env.THINWS_URLS),
    pids: JSON.parse(process.env.THINWS_PIDS),
    secureURL: process.env.THINWS_SECURE_URL,
    tokens: JSON.parse(process.env.THINWS_TOKENS),
  };
}

export function uid(prefix) {
  return `${prefix}-${crypto.randomBytes(6).toString("hex")}`;
}

/** A client with quick backoff and Node's WebSocket, closed when test `t` ends. */
export function makeClient(t, url, connectionID, options = {}) {
  const client = new ThinWSClient(url, connectionID, {
    WebSocket, backoffInitial: 20, backoffMax: 200, ...options,
  });
  t.after(() => client.close());
  return client;
}

/** The argument of the next `event` of `client` for which `predicate` holds. */
export function once(client, event, predicate = () => true) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no '${event}' event within ${WAIT} ms`));
    }, WAIT);
    const off = client.on(event, (arg) => {
      if (!predicate(arg)) return;
      clearTimeout(timer);
      off();
      resolve(arg);
    });
  });
}

/** Every later `event` of `client`, in an array that fills up. */
export function collect(client, event) {
  const seen = [];
  client.on(event, (arg) => seen.push(arg));
  return seen;
}

/** Polls `predicate` until it holds, for at most WAIT ms. */
export async function until(predicate, what) {
  const deadline = Date.now() + WAIT;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`no ${what} within ${WAIT} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Rejects unless `promise` rejects with a ThinWSError of this `code`; returns the error. */
export async function rejectsWith(promise, code) {
  let error = null;
  await assert.rejects(promise, (err) => {
    error = err;
    assert.equal(err.name, "ThinWSError", `expected a ThinWSError, got ${err}`);
    assert.equal(err.code, code, `expected code ${code}, got ${err.code}: ${err.message}`);
    return true;
  });
  return error;
}

/** A ws:// URL of a loopback port nothing listens on (connects fail at once). */
export async function deadURL() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return `ws://127.0.0.1:${port}/ws/thinws/`;
}

/** A real HTTP server that completes every WebSocket handshake, sends the text frames in
 * `greeting` (if any) and then stays silent: a server that hangs, or talks nonsense. */
export async function rawServer(t, greeting = []) {
  const sockets = new Set();
  const server = http.createServer((req, res) => res.writeHead(404).end());
  const stats = { upgrades: 0 };
  server.on("upgrade", (req, socket) => {
    stats.upgrades += 1;
    sockets.add(socket);
    socket.on("error", () => {});
    const accept = crypto.createHash("sha1")
      .update(`${req.headers["sec-websocket-key"]}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
      .digest("base64");
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    for (const text of greeting) {
      const payload = Buffer.from(text, "utf8");
      assert.ok(payload.length < 126, "rawServer only writes short frames");
      socket.write(Buffer.concat([Buffer.from([0x81, payload.length]), payload]));
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => new Promise((resolve) => {
    for (const socket of sockets) socket.destroy();
    server.close(resolve);
  }));
  return { url: `ws://127.0.0.1:${server.address().port}/ws/thinws/`, stats };
}
