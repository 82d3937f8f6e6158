// Tokens against an instance under the secure defaults (ANONYMOUS = "token"): a valid token
// connects, a refused one (close 4001) stops the client, a token function gets one retry.
import assert from "node:assert/strict";
import { test } from "node:test";

import { collect, makeClient, once, rejectsWith, servers, sleep, uid, until } from "./helpers.mjs";

const { secureURL, tokens } = servers();

test("a valid token connects; a token function is called before every connect", async (t) => {
  const { connectionID, token } = tokens.fn;
  let calls = 0;
  const client = makeClient(t, secureURL, connectionID, {
    token: async () => { calls += 1; return token; },
  });
  const room = uid("room");
  await client.subscribe(room);
  assert.equal(calls, 1);
  client.close();
  client.open();
  await once(client, "open");
  assert.equal(calls, 2);
  assert.deepEqual(client.rooms, [room]);

  const plain = makeClient(t, secureURL, tokens.plain.connectionID, { token: tokens.plain.token });
  assert.equal((await once(plain, "open")).connectionID, tokens.plain.connectionID);
});

test("a refused token: 'error' forbidden, close 4001, no reconnect, queued calls reject", async (t) => {
  const client = makeClient(t, secureURL, uid("js-refused"), { token: "not-a-token", backoffInitial: 10, backoffMax: 20 });
  const errors = collect(client, "error");
  const closes = collect(client, "close");
  const reconnecting = collect(client, "reconnecting");
  const queued = client.subscribe("lobby");
  const error = await rejectsWith(queued, "forbidden");
  await until(() => client.state === "closed", "the closed state");
  assert.equal(errors.length, 1);
  assert.equal(errors[0], error);
  assert.equal(closes.length, 1);
  assert.equal(closes[0].code, 4001);
  assert.equal(closes[0].willReconnect, false);
  await sleep(300); // 15 times the longest backoff: a reconnect loop would show
  assert.deepEqual(reconnecting, []);
  assert.equal(errors.length, 1);

  // Without any token the secure defaults refuse an anonymous socket too.
  const anonymous = makeClient(t, secureURL, uid("js-anonymous"));
  assert.equal((await once(anonymous, "error")).code, "forbidden");
});

test("a token function gets one retry after 4001, at once, with a fresh token", async (t) => {
  const { connectionID, token } = tokens.retry;
  const given = ["expired-or-bad", token];
  const client = makeClient(t, secureURL, connectionID, { token: () => given.shift() });
  const reconnecting = collect(client, "reconnecting");
  const ack = await once(client, "open");
  assert.equal(ack.connectionID, connectionID);
  assert.deepEqual(reconnecting, [{ attempt: 1, delay: 0 }]);
  assert.equal(given.length, 0);

  let asked = 0;
  const hopeless = makeClient(t, secureURL, uid("js-hopeless"), { token: () => { asked += 1; return "bad"; } });
  const closes = collect(hopeless, "close");
  await until(() => hopeless.state === "closed", "the closed state");
  assert.equal(asked, 2);
  assert.deepEqual(closes.map((c) => [c.code, c.willReconnect]), [[4001, true], [4001, false]]);
});
