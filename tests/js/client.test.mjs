// The JS client against real daphne instances of demo_project (see helpers.mjs for the setup):
// acks, errors, rooms, messages, the 1.0.x constructor and connectionIDs.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  ThinWSClient, ThinWSError, collect, makeClient, once, rejectsWith, servers, uid, until,
} from "./helpers.mjs";

const { urls, pids } = servers();

/** Java's String.hashCode (what the 1.0.x client sent), computed with BigInt, independently
 * of the client's 32-bit arithmetic. */
function javaHashCode(text) {
  let hash = 0n;
  for (let i = 0; i < text.length; i++) hash = (hash * 31n + BigInt(text.charCodeAt(i))) % 2n ** 32n;
  return String(hash >= 2n ** 31n ? hash - 2n ** 32n : hash);
}

test("connect ack; a new client with the same connectionID gets its rooms back", async (t) => {
  const cid = uid("js-rooms");
  const [r1, r2] = [uid("room"), uid("room")];
  const a = makeClient(t, urls[0], cid);
  const states = collect(a, "state");
  const opened = await once(a, "open");
  assert.equal(opened.type, "ack");
  assert.equal(opened.connectionID, cid);
  assert.deepEqual(opened.rooms, []);
  assert.equal(opened.reconnected, false);
  assert.equal(opened.instance, "a");
  assert.deepEqual(states, ["open"]);
  assert.equal(a.state, "open");
  assert.equal(a.instance, "a");
  assert.equal(a.connectionID, cid);
  assert.equal(a.getReadyState(), 1);

  const ack = await a.subscribe(r1);
  assert.equal(ack.type, "ack");
  await a.subscribe(r2);
  await a.subscribe(r1); // twice is fine, and listed once
  assert.deepEqual(a.rooms, [r1, r2]);
  a.rooms.push("not mine"); // a copy
  assert.deepEqual(a.rooms, [r1, r2]);
  a.close();
  assert.equal(a.state, "closed");
  assert.equal(a.getReadyState(), 3);

  const b = makeClient(t, urls[1], cid);
  const again = await once(b, "open");
  assert.deepEqual(again.rooms, [r1, r2]);
  assert.equal(again.instance, "b");
  assert.deepEqual(b.rooms, [r1, r2]);
  await b.unsubscribe(r1);
  assert.deepEqual(b.rooms, [r2]);
});

/** Every "rooms" event of `client`: its argument, and client.rooms as the listener saw it. */
function roomsLog(client) {
  const log = [];
  client.on("rooms", (rooms) => log.push({ rooms, now: client.rooms }));
  return log;
}

test("the 'rooms' event: each connect ack, and each change by this or another socket of the connectionID", async (t) => {
  const cid = uid("js-rooms-event");
  const room = uid("room");
  const a = makeClient(t, urls[0], cid); // two sockets of one connectionID, on two instances
  const b = makeClient(t, urls[1], cid);
  const [logA, logB] = [roomsLog(a), roomsLog(b)];
  await Promise.all([once(a, "open"), once(b, "open")]);
  assert.deepEqual(logA, [{ rooms: [], now: [] }]); // the connect ack, even with no rooms
  assert.deepEqual(logB, [{ rooms: [], now: [] }]);

  // b joins: b's event comes before its Promise resolves, a's with the server's notice.
  const added = once(a, "rooms", (rooms) => rooms.includes(room));
  await b.subscribe(room);
  assert.deepEqual(logB.at(-1), { rooms: [room], now: [room] });
  assert.deepEqual(await added, [room]);
  assert.deepEqual(a.rooms, [room]);
  logB[1].rooms.push("not mine"); // the event's array is a copy
  assert.deepEqual(b.rooms, [room]);
  await b.subscribe(room); // already in it: no change, no event
  assert.equal(logB.length, 2);

  // A third socket connecting now gets its rooms in an event before "open".
  const c = makeClient(t, urls[0], cid);
  const order = [];
  c.on("rooms", (rooms) => order.push(["rooms", rooms]));
  c.on("open", (ack) => order.push(["open", ack.rooms]));
  await until(() => order.length === 2, "the rooms and open events of the third socket");
  assert.deepEqual(order, [["rooms", [room]], ["open", [room]]]);
  c.close();

  // b leaves: both see the room go.
  const removed = once(a, "rooms", (rooms) => !rooms.includes(room));
  await b.unsubscribe(room);
  assert.deepEqual(logB.at(-1), { rooms: [], now: [] });
  assert.deepEqual(await removed, []);
  await rejectsWith(b.unsubscribe(room), "not_subscribed"); // refused: no event
  // Every event of a and b, in order: nothing more (a duplicate "subscribed" notice changes nothing).
  assert.deepEqual(logB.map((e) => e.now), [[], [room], []]);
  assert.deepEqual(logA, [{ rooms: [], now: [] }, { rooms: [room], now: [room] }, { rooms: [], now: [] }]);
});

test("send resolves with the ack carrying the server id; another client gets the message", async (t) => {
  const room = uid("room");
  const sender = makeClient(t, urls[0], uid("js-sender"));
  const receiver = makeClient(t, urls[1], uid("js-receiver"));
  await receiver.subscribe(room);
  await sender.subscribe(room);
  const received = once(receiver, "message", (m) => m.roomID === room);
  const echoed = once(sender, "message", (m) => m.roomID === room);

  const payload = { text: "héllo 😀", n: [1, 2.5, null, true] };
  const sending = sender.send(payload, room);
  assert.equal(typeof sending.messageID, "number");
  const ack = await sending;
  assert.equal(ack.type, "ack");
  assert.equal(ack.messageID, sending.messageID);
  assert.ok(typeof ack.id === "string" && ack.id.length > 0, `ack.id: ${ack.id}`);

  const message = await received;
  assert.deepEqual(message, {
    type: "message", roomID: room, payload, connectionID: sender.connectionID, messageID: ack.id,
  });
  assert.equal((await echoed).messageID, ack.id); // the sender's own copy

  // null is a valid payload; a payload that is not JSON is refused before sending.
  assert.equal((await sender.send(null, room)).type, "ack");
  await assert.rejects(sender.send(undefined, room), /payload must be a JSON value/);
  await assert.rejects(sender.send(10n, room), /cannot be written as JSON/);
  await assert.rejects(sender.subscribe(42), /roomID must be a string, got a number 42/);
});

test("errors reject with a ThinWSError carrying the server's code and message", async (t) => {
  const client = makeClient(t, urls[0], uid("js-errors"));
  const elsewhere = uid("room");

  const sending = client.send("hi", elsewhere);
  const error = await rejectsWith(sending, "not_subscribed");
  assert.ok(error instanceof ThinWSError && error instanceof Error);
  assert.ok(error.message.includes(elsewhere), error.message);
  assert.equal(error.messageID, sending.messageID);
  assert.equal(error.frame.type, "error");
  assert.equal(error.frame.code, "not_subscribed");

  const long = await rejectsWith(client.subscribe("x".repeat(201)), "invalid_envelope");
  assert.match(long.message, /has 201 characters, expected 1\.\.200/);
  await rejectsWith(client.unsubscribe(elsewhere), "not_subscribed");
  await rejectsWith(client.subscribe("lob\u0000by"), "invalid_envelope");

  // The client goes on working after errors.
  await client.subscribe(elsewhere);
  assert.equal((await client.send("hi", elsewhere)).type, "ack");
  assert.equal(client.state, "open");
});

test("calls made before the connect ack are queued and sent in order after it", async (t) => {
  const room = uid("room");
  const client = makeClient(t, urls[1], uid("js-early"));
  assert.equal(client.state, "connecting");
  const subscribing = client.subscribe(room);
  const sending = client.send({ n: 1 }, room); // not_subscribed unless it goes after the subscribe
  assert.equal(client.queued, 2);
  const echoed = once(client, "message", (m) => m.roomID === room);
  await subscribing;
  const ack = await sending;
  assert.equal(client.queued, 0);
  assert.equal((await echoed).messageID, ack.id);
});

test("the 1.0.x constructor: onMessage gets the raw text of every frame, onOpen each connect", async (t) => {
  const cid = uid("js-legacy");
  const room = uid("room");
  const texts = [];
  let opens = 0;
  // The 4-argument form, with Node's global WebSocket (node --experimental-websocket).
  const client = new ThinWSClient(urls[0], cid, (text) => texts.push(text), () => { opens += 1; });
  t.after(() => client.close());
  await until(() => opens === 1, "onOpen call");
  assert.equal(typeof texts[0], "string");
  const ack = JSON.parse(texts[0]);
  assert.equal(ack.type, "ack");
  assert.equal(ack.connectionID, cid);

  await client.subscribe(room);
  const sent = await client.send("plain text", room);
  await until(() => texts.some((text) => JSON.parse(text).type === "message"), "the room message");
  const frames = texts.map((text) => JSON.parse(text));
  assert.deepEqual(frames.map((f) => f.type).sort(), ["ack", "ack", "ack", "message"]);
  const message = frames.find((f) => f.type === "message");
  assert.equal(message.payload, "plain text");
  assert.equal(message.messageID, sent.id);

  // The 5-argument form: the 1.0.x reconnect delay (ms), or an options object, last.
  const withTimeout = new ThinWSClient(urls[1], uid("js-legacy5"), null, () => { opens += 1; }, 250);
  t.after(() => withTimeout.close());
  const withOptions = new ThinWSClient(urls[1], uid("js-legacy5"), () => {}, null, { WebSocket, requestTimeout: 5000 });
  t.after(() => withOptions.close());
  await until(() => opens === 2 && withOptions.state === "open", "the other two clients");
});

test("connectionIDs are sent as given; legacyConnectionID is the 1.0.x hash", async (t) => {
  assert.equal(ThinWSClient.legacyConnectionID("hello"), "99162322");
  assert.equal(ThinWSClient.legacyConnectionID(""), "0");
  const samples = ["hello", "Aa", "BB", "😀", "user-42@example.com", "x".repeat(1000), "web-0123456789abcdef01234567", "大厅"];
  for (const text of samples) assert.equal(ThinWSClient.legacyConnectionID(text), javaHashCode(text), text);
  assert.throws(() => ThinWSClient.legacyConnectionID(5), /needs a string, got a number 5/);

  // Two ids the 1.0.x client hashed to the same number are two identities now.
  const prefix = uid("js-hash");
  const [one, two] = [`${prefix}Aa`, `${prefix}BB`];
  assert.equal(ThinWSClient.legacyConnectionID(one), ThinWSClient.legacyConnectionID(two));
  const room = uid("room");
  const first = makeClient(t, urls[0], one);
  await first.subscribe(room);
  const second = makeClient(t, urls[0], two);
  const ack = await once(second, "open");
  assert.equal(ack.connectionID, two);
  assert.deepEqual(ack.rooms, []);
  // ... and a client that keeps the old hashed id finds the rooms stored under it.
  const hashed = ThinWSClient.legacyConnectionID(uid("js-old"));
  const old = makeClient(t, urls[1], hashed);
  await old.subscribe(room);
  old.close();
  const migrated = makeClient(t, urls[0], hashed);
  assert.deepEqual((await once(migrated, "open")).rooms, [room]);
});

test("requestTimeout: no reply from a paused server rejects 'timeout'; a late ack still counts", async (t) => {
  const room = uid("room");
  const client = makeClient(t, urls[1], uid("js-timeout"), { requestTimeout: 300 });
  await once(client, "open");
  const roomsEvents = collect(client, "rooms");
  process.kill(pids[1], "SIGSTOP"); // the server process stops answering (tests/test_js_client.py also resumes it)
  try {
    const error = await rejectsWith(client.subscribe(room), "timeout");
    assert.match(error.message, /no reply to 'subscribe' within 300 ms/);
    assert.deepEqual(client.rooms, []);
  } finally {
    process.kill(pids[1], "SIGCONT");
  }
  await until(() => client.rooms.includes(room), "the late subscribe ack");
  assert.deepEqual(roomsEvents, [[room]]); // announced too
  assert.equal(client.state, "open");
});

test("a listener that throws does not break the client; it is reported on console.error", async (t) => {
  const reported = [];
  const original = console.error;
  console.error = (...args) => reported.push(args);
  t.after(() => { console.error = original; });
  const room = uid("room");
  const client = makeClient(t, urls[0], uid("js-throws"));
  client.on("open", () => { throw new Error("boom in open"); });
  client.on("message", async () => { throw new Error("boom in message"); });
  const messages = collect(client, "message");
  await client.subscribe(room);
  await client.send("still works", room);
  await until(() => messages.length === 1, "the message");
  await until(() => reported.length === 2, "two reports");
  console.error = original;
  assert.match(String(reported[0][0]), /'open' listener threw/);
  assert.equal(reported[0][1].message, "boom in open");
  assert.equal(reported[1][1].message, "boom in message");
});

test("a connect refused as invalid (a connectionID too long) stops the client with that error", async (t) => {
  const client = makeClient(t, urls[0], "x".repeat(129), { backoffInitial: 10, backoffMax: 20 });
  const errors = collect(client, "error");
  const reconnecting = collect(client, "reconnecting");
  const queued = client.subscribe(uid("room"));
  const error = await rejectsWith(queued, "invalid_envelope");
  assert.match(error.message, /'connectionID' .* has 129 characters/);
  assert.deepEqual(errors, [error]);
  assert.equal(client.state, "closed");
  assert.deepEqual(reconnecting, []);
});
