/*! thinws.mjs: the ES-module build of thinws.js (the JavaScript client of thinws-channels,
 * docs/client-js.md). GENERATED from thinws.js by tests/js/make_module.py: do not edit. */
// ---- shared body: thinws.mjs holds these lines unchanged (tests/test_js_sync.py) ----

const DEFAULTS = {
  token: null, // a string, or a function returning a string (or a Promise of one)
  WebSocket: null, // a WebSocket constructor; default: globalThis.WebSocket
  requestTimeout: 10000, // ms from sending a call's frame to its reply
  connectTimeout: 10000, // ms from creating a socket to the ack of its connect
  backoffInitial: 500, // reconnect delays, ms: see _ended()
  backoffMax: 30000,
  backoffFactor: 2,
  queueLimit: 50, // calls kept while not connected
  autoConnect: true,
  reconnect: true,
};
// The server closes a socket that sends about 90 frames at once (a burst of 60, then 30 refused
// frames): a flushed queue plus `connect` stays well below, with room for the app's next calls.
const MAX_QUEUE_LIMIT = 50;
const EVENTS = ["open", "close", "reconnecting", "message", "error", "state", "rooms"];
// Errors with "messageID": null that answer no frame: the server closes the socket right after.
const UNSOLICITED = ["forbidden", "limit_exceeded", "not_connected"];
const SEEN_LIMIT = 1000; // how many server message ids are remembered to drop duplicates

/** An error reply of the server (`code` is its code), or a failure of the client itself:
 * "timeout", "closed", "queue_full" or "disconnected". */
class ThinWSError extends Error {
  constructor(code, message, messageID, frame) {
    super(message);
    this.name = "ThinWSError";
    this.code = code;
    this.messageID = messageID === undefined ? null : messageID;
    this.frame = frame || null;
  }
}

/** "got a number 5": names a bad value in an error message. */
function describe(value) {
  if (value === null || value === undefined) return `got ${value}`;
  let text = String(value);
  try { text = JSON.stringify(value) || text; } catch (err) { /* a cycle, a BigInt */ }
  if (text.length > 60) text = `${text.slice(0, 60)}…`;
  const kind = Array.isArray(value) ? "array" : typeof value;
  return `got ${/^[aeiou]/.test(kind) ? "an" : "a"} ${kind} ${text}`;
}

/** Calls a listener; an exception (or a rejected Promise) is reported, never propagated. */
function safeCall(fn, arg, what) {
  const report = (err) => console.error(`ThinWSClient: the ${what} listener threw`, err);
  try {
    const result = fn(arg);
    if (result && typeof result.then === "function") result.then(null, report);
  } catch (err) {
    report(err);
  }
}

function checkOptions(options) {
  for (const key of Object.keys(options)) {
    if (!(key in DEFAULTS)) {
      throw new TypeError(`unknown option '${key}', expected one of: ${Object.keys(DEFAULTS).join(", ")}`);
    }
  }
  const opts = Object.assign({}, DEFAULTS, options);
  const minimum = { requestTimeout: 1, connectTimeout: 1, backoffInitial: 1,
    backoffMax: opts.backoffInitial, backoffFactor: 1, queueLimit: 0 };
  for (const name of Object.keys(minimum)) {
    const value = opts[name];
    const integer = name === "queueLimit";
    if (typeof value !== "number" || !isFinite(value) || value < minimum[name]
        || (integer && Math.floor(value) !== value)) {
      throw new TypeError(`options.${name} must be ${integer ? "an integer" : "a number"} >= ${minimum[name]}, ${describe(value)}`);
    }
  }
  if (opts.queueLimit > MAX_QUEUE_LIMIT) {
    throw new RangeError(`options.queueLimit must be at most ${MAX_QUEUE_LIMIT} (the server `
      + `closes a socket that sends too many frames at once), got ${opts.queueLimit}`);
  }
  if (opts.token != null && typeof opts.token !== "string" && typeof opts.token !== "function") {
    throw new TypeError(`options.token must be a string or a function, ${describe(opts.token)}`);
  }
  opts.WebSocket = opts.WebSocket || (typeof WebSocket === "function" ? WebSocket : null);
  if (typeof opts.WebSocket !== "function") {
    throw new TypeError("no WebSocket implementation: pass options.WebSocket (Node 20: run node "
      + "with --experimental-websocket and pass globalThis.WebSocket)");
  }
  return opts;
}

/** Reads the arguments after (url, connectionID): the 1.0.x form (onMessage, onOpen, timeout),
 * with an options object in place of any of them, or just (options). */
function parseArguments(rest) {
  const parsed = { onMessage: null, onOpen: null, options: {} };
  const expected = ["onMessage (a function)", "onOpen (a function)", "options (an object) or a timeout (ms)"];
  rest.forEach((arg, i) => {
    if (arg === null || arg === undefined) return;
    if (typeof arg === "function" && i < 2) parsed[i === 0 ? "onMessage" : "onOpen"] = arg;
    else if (typeof arg === "object" && !Array.isArray(arg) && i === rest.length - 1) {
      parsed.options = Object.assign({}, arg);
    } else if (typeof arg === "number" && i === 2) {
      // 1.0.x's fixed reconnect delay (ms); its 0 ("at once") would be a busy loop here.
      if (arg > 0) parsed.options = { backoffInitial: arg };
    } else {
      throw new TypeError(`ThinWSClient argument ${i + 3} must be ${expected[Math.min(i, 2)]}, ${describe(arg)}`);
    }
  });
  return parsed;
}

class ThinWSClient {
  /** (url, connectionID, onMessage?, onOpen?, options?) as in 1.0.x, or (url, connectionID, options) */
  constructor(url, connectionID, ...rest) {
    const valid = (u) => typeof u === "string" && u !== "";
    if (!valid(url) && typeof url !== "function" && !(Array.isArray(url) && url.length && url.every(valid))) {
      throw new TypeError(`url must be a URL string, a non-empty array of them or a function, ${describe(url)}`);
    }
    if (!valid(connectionID)) throw new TypeError(`connectionID must be a non-empty string, ${describe(connectionID)}`);
    const { onMessage, onOpen, options } = parseArguments(rest);
    this._opts = checkOptions(options);
    this._url = typeof url === "function" ? url : [].concat(url);
    this._urlIndex = 0;
    this._connectionID = connectionID;
    this._legacyMessage = onMessage;
    this._legacyOpen = onOpen;
    this._listeners = {};
    EVENTS.forEach((e) => { this._listeners[e] = []; });
    this._state = "closed";
    this._ws = null; // the current socket: events of any other socket are ignored
    this._connectID = null; // the messageID of the connect awaiting its ack
    this._rooms = [];
    this._instance = null;
    this._nextID = 1;
    this._pending = new Map(); // messageID -> call sent on the current socket, oldest first
    this._queue = []; // calls waiting for a connection, in order
    this._seen = new Set();
    this._attempts = 0; // reconnect attempts since the last connect ack
    this._generation = 0; // bumped when the client stops: a connect attempt running then gives up
    this._timers = { retry: null, connect: null };
    this._stopping = false; // close() or disconnect() was called
    this._stopOnFatal = false; // the server refused the connect for good
    this._everOpen = false; // a connect was acked since open()
    this._tokenRetried = false; // 4001 seen since the last connect ack
    this._fatal = null; // the server's error that explains the coming close
    if (this._opts.autoConnect) this.open();
  }

  /** The 1.0.x client's connectionID for `str`: Java's String.hashCode, in decimal. */
  static legacyConnectionID(str) {
    if (typeof str !== "string") throw new TypeError(`legacyConnectionID needs a string, ${describe(str)}`);
    let hash = 0;
    for (let i = 0; i < str.length; i++) {
      hash = (((hash << 5) - hash) + str.charCodeAt(i)) | 0; // hash * 31 + code unit, in 32 bits
    }
    return String(hash);
  }

  get state() { return this._state; }
  get rooms() { return this._rooms.slice(); }
  get connectionID() { return this._connectionID; }
  get queued() { return this._queue.length; }
  get instance() { return this._instance; }
  getReadyState() { return this._ws ? this._ws.readyState : 3; }

  on(event, fn) {
    if (!this._listeners[event]) {
      throw new TypeError(`unknown event '${event}', expected one of: ${EVENTS.join(", ")}`);
    }
    if (typeof fn !== "function") throw new TypeError(`a listener must be a function, ${describe(fn)}`);
    this._listeners[event].push(fn);
    return () => this.off(event, fn);
  }

  off(event, fn) {
    const list = this._listeners[event] || [];
    const i = list.indexOf(fn);
    if (i >= 0) list.splice(i, 1);
  }

  subscribe(roomID) { return this._call("subscribe", { roomID }); }
  unsubscribe(roomID) { return this._call("unsubscribe", { roomID }); }
  /** Payload first, roomID second, as in 1.0.x. The Promise has the frame's `.messageID`. */
  send(payload, roomID) { return this._call("message", { roomID, payload }); }

  /** Asks the server to end the session (it closes the socket with 1000); no reconnect follows.
   * When not connected it just closes the client and resolves with null. */
  disconnect() {
    if (this._state !== "open") {
      this.close();
      return Promise.resolve(null);
    }
    const call = this._call("disconnect", {});
    this._stopping = true;
    call.then(null, () => this.close()); // no ack: close the socket ourselves
    return call;
  }

  /** Stops for good (until open()): closes the socket; pending and queued calls reject "closed". */
  close() {
    if (this._state === "closed") return;
    const ws = this._ws;
    this._ws = null;
    try { if (ws) ws.close(1000, "closed by the client"); } catch (err) { /* closing already */ }
    const error = new ThinWSError("closed", "the client was closed");
    this._rejectAll(this._pending.values(), error);
    this._pending.clear();
    this._finish(error);
    if (ws) this._emit("close", { code: 1000, reason: "closed by the client", willReconnect: false });
  }

  /** Starts connecting: after autoConnect: false, or again after close(). */
  open() {
    if (this._state !== "closed") return;
    this._stopping = false;
    this._everOpen = false;
    this._tokenRetried = false;
    this._fatal = null;
    this._attempts = 0;
    this._setState("connecting");
    this._connect();
  }

  // -- calls -------------------------------------------------------------------------------

  _call(type, fields) {
    let call;
    const promise = new Promise((resolve, reject) => { call = { resolve, reject, type, roomID: fields.roomID }; });
    call.id = this._nextID++;
    promise.messageID = call.id;
    let problem = null;
    if ("roomID" in fields && typeof fields.roomID !== "string") {
      problem = `${type}: roomID must be a string, ${describe(fields.roomID)}`;
    } else if ("payload" in fields && fields.payload === undefined) {
      problem = "send: payload must be a JSON value (null included), got undefined";
    } else {
      try {
        call.text = JSON.stringify(Object.assign({ type, messageID: call.id }, fields));
      } catch (err) {
        problem = `send: the payload cannot be written as JSON: ${err.message}`;
      }
    }
    if (problem) {
      call.reject(new TypeError(problem));
      return promise;
    }
    if (this._stopping || this._state === "closed") {
      const why = this._stopping ? "the client is closed or closing" : "the client is closed: call open() first";
      call.reject(new ThinWSError("closed", why, call.id));
    } else if (this._state === "open") {
      this._transmit(call);
    } else if (this._queue.length >= this._opts.queueLimit) {
      const why = `offline with ${this._queue.length} calls queued, the limit (options.queueLimit)`;
      call.reject(new ThinWSError("queue_full", why, call.id));
    } else {
      this._queue.push(call);
    }
    return promise;
  }

  _transmit(call) {
    this._pending.set(call.id, call);
    call.timer = setTimeout(() => {
      call.done = true; // stays pending: a late ack still updates the rooms
      const why = `no reply to '${call.type}' within ${this._opts.requestTimeout} ms`;
      call.reject(new ThinWSError("timeout", why, call.id));
    }, this._opts.requestTimeout);
    try { this._ws.send(call.text); } catch (err) { /* closing: its close event settles the call */ }
  }

  _rejectAll(calls, error) {
    for (const call of calls) {
      clearTimeout(call.timer);
      if (!call.done) {
        call.done = true;
        call.reject(error);
      }
    }
  }

  // -- sockets -----------------------------------------------------------------------------

  async _connect() {
    const generation = this._generation;
    let token = this._opts.token;
    let ws;
    try {
      const url = typeof this._url === "function" ? this._url() : this._url[this._urlIndex++ % this._url.length];
      if (typeof url !== "string") throw new TypeError(`the url function must return a string, ${describe(url)}`);
      if (typeof token === "function") token = await token();
      if (token != null && typeof token !== "string") {
        throw new TypeError(`options.token must give a string, ${describe(token)}`);
      }
      if (generation !== this._generation) return; // the client stopped meanwhile
      ws = new this._opts.WebSocket(url);
    } catch (err) {
      if (generation === this._generation) this._ended(1006, `no connection attempt: ${err.message}`);
      return;
    }
    this._ws = ws;
    const listen = (name, handler) => {
      const guarded = (event) => { if (this._ws === ws) handler(event); };
      if (typeof ws.addEventListener === "function") ws.addEventListener(name, guarded);
      else ws[`on${name}`] = guarded;
    };
    listen("open", () => {
      this._connectID = this._nextID++;
      const frame = { type: "connect", messageID: this._connectID, connectionID: this._connectionID };
      if (typeof token === "string") frame.token = token;
      ws.send(JSON.stringify(frame));
    });
    listen("message", (event) => this._receive(event.data));
    listen("close", (event) => this._ended(event.code, event.reason || ""));
    // A failed socket closes with 1006 after its error event (Node 20 skips the close event).
    listen("error", (event) => this._drop((event && event.message) || "the connection failed"));
    this._timers.connect = setTimeout(() => {
      if (this._ws === ws) this._drop(`no connect ack within ${this._opts.connectTimeout} ms`);
    }, this._opts.connectTimeout);
  }

  /** Gives up the current socket at once (its later events are ignored), as if closed 1006. */
  _drop(reason) {
    const ws = this._ws;
    this._ws = null;
    try { ws.close(); } catch (err) { /* closed already, or never opened */ }
    this._ended(1006, reason);
  }

  _receive(data) {
    if (this._legacyMessage) safeCall(this._legacyMessage, data, "onMessage");
    let frame;
    try {
      frame = JSON.parse(data);
      if (!frame || typeof frame !== "object" || Array.isArray(frame)) throw new SyntaxError("not a JSON object");
    } catch (err) {
      const why = `the server sent a frame that is not a JSON object (${err.message}): ${String(data).slice(0, 60)}`;
      this._emit("error", new ThinWSError("invalid_json", why));
      return;
    }
    if (frame.type === "ack" || frame.type === "error") this._reply(frame);
    else if (frame.type === "message") {
      if (frame.messageID != null) {
        if (this._seen.has(frame.messageID)) return; // a duplicate
        this._seen.add(frame.messageID);
        if (this._seen.size > SEEN_LIMIT) this._seen.delete(this._seen.values().next().value);
      }
      this._emit("message", frame);
    } else if (frame.type === "subscribed" || frame.type === "unsubscribed") {
      // Another socket of this connectionID joined or left a room (this socket did too).
      this._updateRooms(frame.roomID, frame.type === "subscribed");
    }
  }

  /** Adds (`joined`) or removes `roomID` in `rooms`; emits "rooms" when the list changed. */
  _updateRooms(roomID, joined) {
    if (this._rooms.includes(roomID) === joined) return;
    this._rooms = joined ? this._rooms.concat([roomID]) : this._rooms.filter((r) => r !== roomID);
    this._emit("rooms", this.rooms);
  }

  _reply(frame) {
    const isError = frame.type === "error";
    const error = isError && new ThinWSError(String(frame.code), String(frame.message), frame.messageID, frame);
    let id = frame.messageID;
    if (isError && (id === null || id === undefined)) {
      if (UNSOLICITED.includes(frame.code)) {
        this._fatal = error; // explains the close that follows
        this._emit("error", error);
        return;
      }
      // A frame the server could not read: replies come in order, so it answers the oldest.
      id = this._connectID !== null ? this._connectID : this._pending.keys().next().value;
    }
    if (this._connectID !== null && id === this._connectID) return this._connectReply(frame, error);
    const call = this._pending.get(id);
    if (!call) {
      if (isError) this._emit("error", error);
      return;
    }
    this._pending.delete(id);
    clearTimeout(call.timer);
    if (!isError && (call.type === "subscribe" || call.type === "unsubscribe")) {
      this._updateRooms(call.roomID, call.type === "subscribe"); // before the Promise settles
    }
    if (call.done) {
      if (isError) this._emit("error", error); // the call had timed out already
    } else {
      call.done = true;
      if (isError) call.reject(error);
      else call.resolve(frame);
    }
  }

  _connectReply(frame, error) {
    this._connectID = null;
    if (error) {
      this._fatal = error;
      this._emit("error", error);
      // A bad connectionID or token (invalid_envelope) will not get better by retrying; after
      // forbidden or limit_exceeded the server closes the socket itself (4001, 4008).
      if (error.code === "invalid_envelope") this._stopOnFatal = true;
      if (error.code !== "forbidden" && error.code !== "limit_exceeded") this._drop(`connect refused: ${error.code}`);
      return;
    }
    clearTimeout(this._timers.connect);
    this._rooms = Array.isArray(frame.rooms) ? frame.rooms.slice() : [];
    this._instance = frame.instance === undefined ? null : frame.instance;
    const reconnected = this._everOpen;
    this._everOpen = true;
    this._attempts = 0;
    this._tokenRetried = false;
    this._fatal = null;
    this._state = "open";
    // Queued calls first, in order; calls made by the listeners below go after them.
    const queue = this._queue;
    this._queue = [];
    queue.forEach((call) => this._transmit(call));
    this._emit("state", "open");
    this._emit("rooms", this.rooms); // after every connect ack, changed or not
    this._emit("open", Object.assign({}, frame, { reconnected }));
    if (this._legacyOpen && this._state === "open") safeCall(this._legacyOpen, undefined, "onOpen");
  }

  /** The socket closed (or an attempt failed): reconnect or stop, as docs/protocol.md says. */
  _ended(code, reason) {
    this._ws = null;
    this._connectID = null;
    clearTimeout(this._timers.connect);
    const refused = code === 4001;
    const tokenFn = typeof this._opts.token === "function";
    const retry = !this._stopping && this._opts.reconnect && code !== 1000 && !this._stopOnFatal
      && (!refused || (tokenFn && !this._tokenRetried));
    if (refused) this._tokenRetried = true;
    const stopError = this._fatal
      || new ThinWSError("closed", `the connection ended (close code ${code}${reason ? `: ${reason}` : ""})`);
    // Calls in flight: subscribe/unsubscribe are idempotent, so they go out again after the
    // reconnect; a message may or may not have been published, so its caller decides.
    const again = [];
    for (const call of this._pending.values()) {
      clearTimeout(call.timer);
      if (call.done) continue;
      const idempotent = call.type === "subscribe" || call.type === "unsubscribe";
      if (retry && idempotent && this._queue.length + again.length < this._opts.queueLimit) {
        again.push(call);
        continue;
      }
      call.done = true;
      if (retry || call.type === "message") {
        const maybe = call.type === "message" ? ": it may or may not have been published" : "";
        call.reject(new ThinWSError("disconnected",
          `the socket closed (code ${code}) before the reply to this '${call.type}'${maybe}`, call.id));
      } else call.reject(stopError);
    }
    this._pending.clear();
    this._queue = again.concat(this._queue);
    if (!retry) {
      this._finish(stopError);
      this._emit("close", { code, reason, willReconnect: false });
      return;
    }
    // Full jitter: random(0, min(max, initial * factor^(attempt-1))); at once after 4012 (the
    // server is going away) and for the one retry with a fresh token after 4001.
    this._fatal = null;
    this._attempts += 1;
    const { backoffInitial, backoffFactor, backoffMax } = this._opts;
    const cap = Math.min(backoffMax, backoffInitial * Math.pow(backoffFactor, this._attempts - 1));
    const delay = this._attempts === 1 && (code === 4012 || refused) ? 0 : Math.round(Math.random() * cap);
    this._setState("reconnecting");
    this._emit("close", { code, reason, willReconnect: true });
    if (this._state === "reconnecting") this._emit("reconnecting", { attempt: this._attempts, delay });
    if (this._state !== "reconnecting") return; // a listener closed the client
    this._timers.retry = setTimeout(() => this._connect(), delay);
  }

  _finish(error) {
    this._stopping = true;
    this._stopOnFatal = false;
    this._generation += 1;
    clearTimeout(this._timers.retry);
    clearTimeout(this._timers.connect);
    this._rejectAll(this._queue, error);
    this._queue = [];
    this._setState("closed");
  }

  _setState(state) {
    if (state === this._state) return;
    this._state = state;
    this._emit("state", state);
  }

  _emit(event, arg) {
    this._listeners[event].slice().forEach((fn) => safeCall(fn, arg, `'${event}'`));
  }
}

// ---- end of the shared body ----
export { ThinWSClient, ThinWSError };
