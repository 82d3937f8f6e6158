// Reconnecting, the offline queue, close() and disconnect(), against real servers: daphne
// instances of demo_project (one of them is killed here), a port nothing listens on, and raw
// WebSocket servers that hang or send nonsense (helpers.mjs).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  collect, deadURL, makeClient, once, rawServer, rejectsWith, servers, sleep, uid, until,
} from "./helpers.mjs";

const { urls, pids } = servers();

test("the instance dies: the client reconnects to the next URL, rooms restored, offline calls flushed in order", async (t) => {
  const room = uid("room");
  const later = uid("room");
  const peer = makeClient(t, urls[1], uid("js-peer"));
  await peer.subscribe(room);
  const heard = [];
  peer.on("message", (m) => { if (m.roomID === room) heard.push(m.payload); });

  // Instance "c" (urls[2]) is this test's to kill; the next URL in the list is instance "a".
  const client = makeClient(t, [urls[2], urls[0]], uid("js-survivor"));
  assert.equal((await once(client, "open")).instance, "c");
  await client.subscribe(room);
  const closes = collect(client, "close");
  const reconnecting = collect(client, "reconnecting");
  const reopened = once(client, "open", (ack) => ack.reconnected);

  // Two calls in flight when the instance dies: it is paused first, so they get no reply.
  process.kill(pids[2], "SIGSTOP");
  const inFlight = uid("room");
  const subscribing = client.subscribe(inFlight);
  const lost = rejectsWith(client.send("in flight", room), "disconnected");
  assert.equal(client.queued, 0);
  process.kill(pids[2], "SIGKILL");
  await until(() => closes.length === 1, "a close event");
  assert.equal(closes[0].willReconnect, true);
  assert.equal(client.state, "reconnecting");
  assert.match((await lost).message, /it may or may not have been published/);
  const calls = [client.send("m1", room), client.send("m2", room), client.subscribe(later), client.send("m3", room)];
  assert.equal(client.queued, 5); // the subscribe in flight goes out again, first

  const ack = await reopened;
  assert.equal(ack.instance, "a");
  assert.deepEqual(ack.rooms, [room]); // restored by the server from the connectionID
  assert.equal(reconnecting[0].attempt, 1);
  await subscribing;
  const acks = await Promise.all(calls);
  assert.deepEqual(acks.map((a) => a.messageID), calls.map((c) => c.messageID));
  assert.deepEqual(client.rooms, [room, inFlight, later]);
  assert.equal(client.queued, 0);
  assert.equal(client.instance, "a");
  await until(() => heard.length === 3, "the three messages sent while offline");
  assert.deepEqual(heard, ["m1", "m2", "m3"]);
});

test("reconnecting events: attempts count up, delays grow by backoffFactor up to backoffMax", async (t) => {
  const url = await deadURL();
  const random = Math.random;
  Math.random = () => 0.999999; // full jitter at its top: delay = the cap
  t.after(() => { Math.random = random; });
  const client = makeClient(t, url, uid("js-backoff"), { backoffInitial: 10, backoffFactor: 2, backoffMax: 80 });
  const events = collect(client, "reconnecting");
  const closes = collect(client, "close");
  await until(() => events.length >= 6, "six reconnect attempts");
  client.close();
  Math.random = random;
  assert.deepEqual(events.slice(0, 6), [10, 20, 40, 80, 80, 80].map((delay, i) => ({ attempt: i + 1, delay })));
  assert.ok(closes.every((c) => c.code === 1006 && c.willReconnect), JSON.stringify(closes));

  // With real jitter every delay lies between 0 and its cap.
  const jittered = makeClient(t, url, uid("js-jitter"), { backoffInitial: 10, backoffFactor: 3, backoffMax: 50 });
  const seen = collect(jittered, "reconnecting");
  await until(() => seen.length >= 5, "five reconnect attempts");
  jittered.close();
  seen.slice(0, 5).forEach(({ attempt, delay }, i) => {
    assert.equal(attempt, i + 1);
    assert.ok(delay >= 0 && delay <= Math.min(50, 10 * 3 ** i), `attempt ${attempt}: delay ${delay}`);
  });
});

test("connectTimeout: a server that accepts the socket and never answers is left for the next URL", async (t) => {
  const silent = await rawServer(t);
  const room = uid("room");
  const client = makeClient(t, [silent.url, urls[0]], uid("js-silent"), { connectTimeout: 500 });
  const closes = collect(client, "close");
  const subscribing = client.subscribe(room); // queued meanwhile
  const ack = await once(client, "open");
  assert.equal(ack.instance, "a");
  assert.ok(silent.stats.upgrades >= 1);
  // (on a very slow machine instance "a" may miss the deadline too: then the list is longer)
  assert.ok(closes.length >= 1);
  for (const close of closes) {
    assert.deepEqual([close.code, close.reason, close.willReconnect], [1006, "no connect ack within 500 ms", true]);
  }
  await subscribing;
  assert.deepEqual(client.rooms, [room]);
});

test("frames that are not JSON objects are 'error' events (invalid_json); a repeated message is dropped", async (t) => {
  const message = JSON.stringify({ type: "message", roomID: "r", payload: 1, connectionID: "x", messageID: "s-1" });
  const other = message.replace("s-1", "s-2");
  const server = await rawServer(t, ["this is not JSON", message, message, "[1, 2]", other]);
  const client = makeClient(t, server.url, uid("js-garbage"));
  const errors = collect(client, "error");
  const messages = collect(client, "message");
  await until(() => errors.length === 2 && messages.length === 2, "two errors and two messages");
  assert.deepEqual(errors.map((e) => e.code), ["invalid_json", "invalid_json"]);
  assert.match(errors[0].message, /this is not JSON/);
  assert.deepEqual(messages.map((m) => m.messageID), ["s-1", "s-2"]);
  assert.equal(client.state, "connecting"); // still waiting for its connect ack
});

test("the offline queue is bounded (queue_full); close() rejects it with 'closed' and stops reconnecting", async (t) => {
  const client = makeClient(t, await deadURL(), uid("js-queue"), { queueLimit: 3, backoffInitial: 10, backoffMax: 20 });
  const calls = [client.subscribe("r1"), client.send("m", "r1"), client.unsubscribe("r1")];
  assert.equal(client.queued, 3);
  const full = await rejectsWith(client.send("one too many", "r1"), "queue_full");
  assert.match(full.message, /3 calls queued/);
  const reconnecting = collect(client, "reconnecting");
  await until(() => reconnecting.length >= 2, "two reconnect attempts");

  const events = [];
  for (const name of ["close", "reconnecting", "state", "open"]) client.on(name, (arg) => events.push([name, arg]));
  client.close();
  for (const call of calls) await rejectsWith(call, "closed");
  assert.equal(client.state, "closed");
  assert.equal(client.queued, 0);
  await rejectsWith(client.subscribe("r1"), "closed");
  client.close(); // idempotent
  // Nothing happens any more: wait 25 times the longest backoff delay.
  await sleep(500);
  // (a "close" event shows up when close() ended a connect attempt in progress)
  assert.deepEqual(events.filter(([name]) => name !== "close"), [["state", "closed"]]);
  assert.ok(events.every(([name, arg]) => name !== "close" || !arg.willReconnect), JSON.stringify(events));
});

test("close() rejects calls in flight with 'closed'; open() starts again", async (t) => {
  const room = uid("room");
  const client = makeClient(t, urls[0], uid("js-close"));
  await once(client, "open");
  const closes = collect(client, "close");
  const subscribing = client.subscribe(room);
  const sending = client.send("x", room);
  client.close();
  await rejectsWith(subscribing, "closed");
  await rejectsWith(sending, "closed");
  assert.deepEqual(closes, [{ code: 1000, reason: "closed by the client", willReconnect: false }]);
  client.open();
  assert.equal(client.state, "connecting");
  assert.equal((await once(client, "open")).reconnected, false);
});

test("disconnect(): resolves with the ack, the server closes with 1000, no reconnect; open() restores the rooms", async (t) => {
  const room = uid("room");
  const client = makeClient(t, urls[1], uid("js-disconnect"), { autoConnect: false });
  assert.equal(client.state, "closed");
  await rejectsWith(client.subscribe(room), "closed"); // not started yet
  client.open();
  await client.subscribe(room);
  const closes = collect(client, "close");
  const reconnecting = collect(client, "reconnecting");
  const ack = await client.disconnect();
  assert.equal(ack.type, "ack");
  await until(() => client.state === "closed", "the closed state");
  assert.deepEqual(closes.map((c) => [c.code, c.willReconnect]), [[1000, false]]);
  await rejectsWith(client.send("late", room), "closed");
  await sleep(500); // the backoff is at most 200 ms: a reconnect would have started
  assert.deepEqual(reconnecting, []);

  client.open();
  const again = await once(client, "open");
  assert.deepEqual(again.rooms, [room]);
  client.close();
  assert.equal(await client.disconnect(), null); // not connected: just closes
});
