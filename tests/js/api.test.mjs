// The client's API without a server: the three builds (classic script, CommonJS, ES module),
// argument checks that name the bad value, listeners and the initial state.
import assert from "node:assert/strict";
import fs from "node:fs";
import { createRequire } from "node:module";
import { test } from "node:test";
import vm from "node:vm";

import { ThinWSClient, ThinWSError } from "./helpers.mjs";

const SCRIPT = new URL("../../thinws_channels/static/thinws_channels/thinws.js", import.meta.url);
const options = { WebSocket, autoConnect: false };

test("the classic script defines window.ThinWSClient; require() gets module.exports", () => {
  const window = { console };
  window.window = window;
  vm.runInNewContext(fs.readFileSync(SCRIPT, "utf8"), window, { filename: "thinws.js" });
  assert.equal(typeof window.ThinWSClient, "function");
  assert.equal(typeof window.ThinWSError, "function");
  assert.equal(window.ThinWSClient.legacyConnectionID("hello"), "99162322");

  const required = createRequire(import.meta.url)(SCRIPT.pathname);
  assert.deepEqual(Object.keys(required).sort(), ["ThinWSClient", "ThinWSError"]);
  assert.equal(required.ThinWSClient.legacyConnectionID("Aa"), ThinWSClient.legacyConnectionID("BB"));
});

test("bad arguments and options throw errors that name the bad value", () => {
  const cases = [
    [() => new ThinWSClient(5, "c", options), /url must be .*got a number 5/],
    [() => new ThinWSClient([], "c", options), /url must be .*got an array \[\]/],
    [() => new ThinWSClient("ws://x/", "", options), /connectionID must be a non-empty string, got a string ""/],
    [() => new ThinWSClient("ws://x/", 42, options), /connectionID .*got a number 42/],
    [() => new ThinWSClient("ws://x/", "c", { ...options, requestTimout: 5 }), /unknown option 'requestTimout'/],
    [() => new ThinWSClient("ws://x/", "c", { ...options, queueLimit: 60 }), /queueLimit must be at most 50.*got 60/],
    [() => new ThinWSClient("ws://x/", "c", { ...options, queueLimit: 2.5 }), /queueLimit must be an integer >= 0, got a number 2.5/],
    [() => new ThinWSClient("ws://x/", "c", { ...options, backoffInitial: 0 }), /backoffInitial must be a number >= 1, got a number 0/],
    [() => new ThinWSClient("ws://x/", "c", { ...options, backoffMax: 100 }), /backoffMax must be a number >= 500/],
    [() => new ThinWSClient("ws://x/", "c", { ...options, token: 7 }), /token must be a string or a function, got a number 7/],
    [() => new ThinWSClient("ws://x/", "c", { autoConnect: false, WebSocket: null }), null],
    [() => new ThinWSClient("ws://x/", "c", "onMessage?"), /argument 3 must be onMessage \(a function\), got a string "onMessage\?"/],
    [() => new ThinWSClient("ws://x/", "c", () => {}, () => {}, "5"), /argument 5 must be options/],
  ];
  for (const [make, pattern] of cases) {
    if (pattern) assert.throws(make, pattern);
    else assert.doesNotThrow(make); // globalThis.WebSocket (node --experimental-websocket)
  }
  const client = new ThinWSClient("ws://x/", "c", options);
  assert.throws(() => client.on("opened", () => {}), /unknown event 'opened', expected one of: open, close/);
  assert.throws(() => client.on("open", "f"), /a listener must be a function, got a string "f"/);
});

test("a client with autoConnect: false waits for open(); on() returns the remover", async () => {
  const client = new ThinWSClient(["ws://127.0.0.1:9/a", "ws://127.0.0.1:9/b"], "c", options);
  assert.equal(client.state, "closed");
  assert.deepEqual(client.rooms, []);
  assert.equal(client.queued, 0);
  assert.equal(client.instance, null);
  assert.equal(client.getReadyState(), 3);
  const seen = [];
  const remove = client.on("state", (state) => seen.push(state));
  client.off("state", () => {}); // unknown listener: nothing happens
  const error = await client.send("x", "room").catch((err) => err);
  assert.ok(error instanceof ThinWSError);
  assert.equal(error.code, "closed");
  assert.match(error.message, /call open\(\) first/);
  remove();
  client.open();
  client.close();
  assert.deepEqual(seen, []);
  assert.equal(client.state, "closed");
});

test("ThinWSError carries code, message, messageID and frame", () => {
  const frame = { type: "error", messageID: 3, code: "not_subscribed", message: "no" };
  const error = new ThinWSError(frame.code, frame.message, frame.messageID, frame);
  assert.ok(error instanceof Error);
  assert.equal(error.name, "ThinWSError");
  assert.deepEqual([error.code, error.message, error.messageID, error.frame], ["not_subscribed", "no", 3, frame]);
  const own = new ThinWSError("timeout", "late");
  assert.deepEqual([own.messageID, own.frame], [null, null]);
});
