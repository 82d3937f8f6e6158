// The thinws-channels chat demo: one ThinWSClient (thinws_channels/static/thinws_channels/thinws.js),
// rooms kept by the server, messages {name, text} rendered as text only.
//
// Everything the visitor or other visitors typed (names, room names, messages, server error
// messages) goes into the page through textContent, never as HTML (tests/test_demo.py keeps the
// HTML-writing DOM APIs out of this file).
(function () {
  "use strict";

  const NAME_KEY = "thinws-demo:name";
  const ROOM_KEY = "thinws-demo:room";
  const DEFAULT_ROOM = "lobby";
  const HISTORY_LIMIT = 200; // messages kept per room in this page (the server keeps none)

  const $ = (id) => document.getElementById(id);
  const ui = {
    state: $("state"),
    queued: $("queued"),
    instance: $("instance"),
    cid: $("cid"),
    name: $("name"),
    rooms: $("rooms"),
    join: $("join"),
    roomInput: $("room-input"),
    roomTitle: $("room-title"),
    error: $("error"),
    errorText: $("error-text"),
    messages: $("messages"),
    compose: $("compose"),
    text: $("text"),
    send: $("send"),
  };

  let client = null;
  let active = localStorage.getItem(ROOM_KEY) || DEFAULT_ROOM;
  let firstOpen = true;
  let retry = null; // {attempt, at}: the next reconnect attempt, while reconnecting
  let ticker = null;
  const history = new Map(); // roomID -> [<li>] in arrival order
  const unread = new Map(); // roomID -> count of messages that came while another room was shown
  const seen = new Map(); // server message id -> its <li> (drops duplicates and own echoes)
  const outbox = []; // own messages not acked yet: {li, room, text, echo}
  const joining = new Set();

  // -- small helpers ------------------------------------------------------------------------

  function make(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function plural(n, word) {
    return n + " " + word + (n === 1 ? "" : "s");
  }

  function myName() {
    return ui.name.value.trim() || "anonymous";
  }

  // kind "connection": about the socket, hidden again by the next successful connect;
  // "action": about something the visitor did, stays until dismissed or replaced.
  function showError(text, kind) {
    ui.errorText.textContent = text;
    ui.error.dataset.kind = kind || "action";
    ui.error.hidden = false;
  }

  // What an error means to the person looking at the page; the server's own message (which
  // names the bad value) follows.
  const EXPLAIN = {
    forbidden: "Not allowed",
    rate_limited: "Slow down, you are sending too fast",
    not_subscribed: "You are not in that room",
    limit_exceeded: "A limit was reached",
    invalid_envelope: "The server refused that",
    unavailable: "The server is having trouble, try again",
    timeout: "The server did not answer in time",
    queue_full: "Too many messages are waiting for the connection",
    disconnected: "The connection dropped before the server confirmed it",
    closed: "The connection is closed",
  };

  function describe(err) {
    const code = (err && err.code) || "error";
    const detail = (err && err.message) || String(err);
    return (EXPLAIN[code] || "Error") + ": " + detail + " (" + code + ")";
  }

  // -- connection state -----------------------------------------------------------------------

  function queuedCount() {
    return outbox.filter((item) => item.li.classList.contains("queued")).length;
  }

  function renderState() {
    const state = client ? client.state : "connecting";
    let text;
    if (state === "open") {
      text = "connected";
    } else if (state === "reconnecting" && retry) {
      const secs = Math.max(0, Math.ceil((retry.at - Date.now()) / 1000));
      text = "reconnecting (attempt " + retry.attempt + ", " + (secs ? "in " + secs + "s" : "now") + ")";
    } else if (state === "reconnecting") {
      text = "reconnecting…";
    } else if (state === "connecting") {
      text = "connecting…";
    } else {
      text = "offline";
    }
    ui.state.textContent = text;
    ui.state.dataset.state = state;
    const queued = queuedCount();
    ui.queued.hidden = state === "open" || queued === 0;
    ui.queued.textContent = "offline, " + plural(queued, "queued message");
    // The server names itself in the connect ack when its INSTANCE_NAME setting is set.
    // While reconnecting it still shows the last one.
    const unnamed = state === "open" && !client.instance;
    ui.instance.textContent = (client && client.instance) || (unnamed ? "unnamed" : "–");
    ui.instance.title = unnamed ? "this server has no INSTANCE_NAME (env THINWS_INSTANCE)" : "";
  }

  function tick(on) {
    if (on && !ticker) ticker = setInterval(renderState, 250);
    if (!on && ticker) {
      clearInterval(ticker);
      ticker = null;
    }
  }

  // -- rooms ------------------------------------------------------------------------------------

  function rooms() {
    return client ? client.rooms : [];
  }

  function renderRooms() {
    const items = [];
    const names = rooms().concat([...joining].filter((room) => !rooms().includes(room)));
    for (const room of names) {
      const li = make("li", "room");
      li.dataset.room = room;
      li.setAttribute("data-testid", "room");
      const pick = make("button", "pick", "#" + room);
      pick.type = "button";
      pick.setAttribute("data-testid", "room-switch");
      if (room === active) pick.setAttribute("aria-current", "true");
      if (joining.has(room)) {
        li.classList.add("joining");
        pick.disabled = true;
        pick.title = "joining…";
      }
      pick.addEventListener("click", () => switchTo(room));
      const count = unread.get(room) || 0;
      if (count) pick.append(make("span", "unread", String(count)));
      const leave = make("button", "leave", "×");
      leave.type = "button";
      leave.title = "Leave #" + room;
      leave.setAttribute("aria-label", "Leave room " + room);
      leave.setAttribute("data-testid", "room-leave");
      leave.disabled = joining.has(room);
      leave.addEventListener("click", () => leaveRoom(room));
      li.append(pick, leave);
      items.push(li);
    }
    if (!items.length) items.push(make("li", "empty", "No rooms yet: join one below."));
    ui.rooms.replaceChildren(...items);
  }

  // The room list changed (the client's "rooms" event): a connect ack, a join or leave of this
  // tab or of another tab of this connection. Safe at any time: it reads only client.rooms.
  function roomsChanged() {
    if (!rooms().includes(active)) active = rooms()[0] || null;
    renderRooms();
    renderMessages();
  }

  function switchTo(room) {
    active = room;
    if (room) localStorage.setItem(ROOM_KEY, room);
    unread.delete(room);
    renderRooms();
    renderMessages();
    ui.text.focus();
  }

  function joinRoom(room) {
    if (rooms().includes(room)) return switchTo(room);
    joining.add(room);
    renderRooms();
    return client.subscribe(room).then(
      () => {
        joining.delete(room);
        switchTo(room);
      },
      (err) => {
        joining.delete(room);
        renderRooms();
        showError("Could not join #" + room + ". " + describe(err));
      }
    );
  }

  function leaveRoom(room) {
    return client.unsubscribe(room).then(
      () => {
        history.delete(room);
        unread.delete(room);
        switchTo(active); // the "rooms" event has already moved `active` off this room
      },
      (err) => showError("Could not leave #" + room + ". " + describe(err))
    );
  }

  // -- messages ---------------------------------------------------------------------------------

  // A room message's payload as the demo sends it, {name, text}; anything else (a plain string
  // from send_to_room, other JSON from other clients) is shown as its text or JSON.
  function readPayload(payload) {
    if (payload && typeof payload === "object" && !Array.isArray(payload) && "text" in payload) {
      return {name: payload.name == null ? null : String(payload.name), text: String(payload.text)};
    }
    return {name: null, text: typeof payload === "string" ? payload : JSON.stringify(payload)};
  }

  function messageItem(who, text, kind) {
    const li = make("li", "msg " + kind);
    li.setAttribute("data-testid", "message");
    const meta = make("div", "meta");
    const now = new Date();
    const time = make("time", "time", now.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"}));
    time.dateTime = now.toISOString();
    meta.append(make("span", "who", who), time, make("span", "status"));
    const body = make("p", "text", text);
    body.setAttribute("data-testid", "message-text");
    li.append(meta, body);
    return li;
  }

  function setStatus(li, status, text) {
    li.classList.remove("queued", "sending", "failed");
    if (status) li.classList.add(status);
    li.querySelector(".status").textContent = text || "";
  }

  function add(room, li) {
    li.dataset.room = room;
    const list = history.get(room) || [];
    list.push(li);
    if (list.length > HISTORY_LIMIT) {
      const old = list.shift();
      old.remove();
      if (old.dataset.id) seen.delete(old.dataset.id);
    }
    history.set(room, list);
    if (room === active) {
      const placeholder = ui.messages.querySelector(".empty");
      if (placeholder) placeholder.remove();
      ui.messages.append(li);
      li.scrollIntoView({block: "end"});
    } else if (li.classList.contains("theirs")) {
      unread.set(room, (unread.get(room) || 0) + 1);
      renderRooms();
    }
  }

  function forget(li) {
    const list = history.get(li.dataset.room) || [];
    const at = list.indexOf(li);
    if (at >= 0) list.splice(at, 1);
    li.remove();
  }

  function renderMessages() {
    ui.roomTitle.textContent = active ? "#" + active : "No room";
    ui.text.placeholder = active ? "Message #" + active : "Join a room to chat";
    // Until the room is joined (the first connect ack, a join) the server would refuse a message.
    ui.text.disabled = ui.send.disabled = !active || !rooms().includes(active);
    const list = history.get(active) || [];
    if (list.length) ui.messages.replaceChildren(...list);
    else ui.messages.replaceChildren(make("li", "empty", active ? "No messages yet. Say hello!" : ""));
    if (list.length) list[list.length - 1].scrollIntoView({block: "end"});
  }

  function notice(text) {
    if (active) add(active, make("li", "notice", text));
  }

  function onRoomMessage(frame) {
    if (seen.has(frame.messageID)) return; // a duplicate, or the echo of an acked message of ours
    const {name, text} = readPayload(frame.payload);
    const mine = frame.connectionID != null && frame.connectionID === client.connectionID;
    if (mine) {
      // Our own echo: it may come before the send's ack. Pair it with the oldest unacked
      // message of ours with the same room and text; the ack then confirms the pairing.
      const item = outbox.find((o) => !o.echo && o.room === frame.roomID && o.text === text);
      if (item) {
        item.echo = frame;
        seen.set(frame.messageID, item.li);
        return;
      }
    }
    const who = mine ? "you" : frame.connectionID == null ? "server" : name || frame.connectionID;
    const li = messageItem(who, text, mine ? "mine" : frame.connectionID == null ? "system" : "theirs");
    li.dataset.id = frame.messageID;
    seen.set(frame.messageID, li);
    add(frame.roomID, li);
  }

  function settle(item) {
    const at = outbox.indexOf(item);
    if (at >= 0) outbox.splice(at, 1);
    renderState();
  }

  function confirmSent(item, ack) {
    settle(item);
    setStatus(item.li, null);
    item.li.dataset.id = ack.id;
    // Same text sent at once from another tab of this connection: the echo we paired was theirs.
    if (item.echo && item.echo.messageID !== ack.id) {
      seen.delete(item.echo.messageID);
      onRoomMessage(item.echo);
    }
    const shown = seen.get(ack.id);
    if (shown && shown !== item.li) forget(shown);
    seen.set(ack.id, item.li);
  }

  function sendFailed(item, err) {
    settle(item);
    setStatus(item.li, "failed", "not sent");
    const again = make("button", "again", "Send again");
    again.type = "button";
    again.addEventListener("click", () => {
      forget(item.li);
      sendMessage(item.room, item.text);
    });
    item.li.querySelector(".meta").append(again);
    showError(describe(err));
  }

  function sendMessage(room, text) {
    const li = messageItem("you", text, "mine");
    const item = {li, room, text, echo: null};
    if (client.state === "open") setStatus(li, "sending", "sending…");
    else setStatus(li, "queued", "queued");
    outbox.push(item);
    add(room, li);
    renderState();
    client.send({name: myName(), text}, room).then(
      (ack) => confirmSent(item, ack),
      (err) => sendFailed(item, err)
    );
  }

  // -- the client ---------------------------------------------------------------------------

  const TOKEN_TIMEOUT = 10000; // ms: a server that hangs must not stall the reconnects

  async function fetchGrant() {
    const response = await fetch("/token/", {
      credentials: "same-origin",
      cache: "no-store",
      signal: AbortSignal.timeout(TOKEN_TIMEOUT),
    });
    if (!response.ok) throw new Error("/token/ answered HTTP " + response.status);
    return response.json();
  }

  function onOpen(ack) {
    retry = null;
    tick(false);
    if (ui.error.dataset.kind === "connection") ui.error.hidden = true;
    for (const item of outbox) {
      if (item.li.classList.contains("queued")) setStatus(item.li, "sending", "sending…");
    }
    if (ack.reconnected) notice("Reconnected to instance " + (client.instance || "?") + ".");
    renderState();
    // The "rooms" event of this connect ack came just before and rendered the rooms.
    if (firstOpen && !client.rooms.length) joinRoom(DEFAULT_ROOM);
    firstOpen = false;
  }

  function connect(grant) {
    let first = grant.token; // the first connect uses it, reconnects fetch a fresh one
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    client = new ThinWSClient(scheme + location.host + "/ws/thinws/", grant.connectionID, {
      token: () => {
        const token = first;
        first = null;
        return token || fetchGrant().then((g) => g.token);
      },
    });
    ui.cid.textContent = client.connectionID;
    // Every connect ack (before "open"), our own joins and leaves, and those of other tabs of
    // this connection (the server's "subscribed"/"unsubscribed" notices).
    client.on("rooms", roomsChanged);
    client.on("open", onOpen);
    client.on("message", onRoomMessage);
    client.on("state", renderState);
    client.on("reconnecting", (info) => {
      retry = {attempt: info.attempt, at: Date.now() + info.delay};
      tick(true);
      renderState();
    });
    client.on("close", (info) => {
      if (!info.willReconnect) {
        tick(false);
        // Keep the reason shown just before (a refused connect), add what followed.
        const before = !ui.error.hidden && ui.error.dataset.kind === "connection" ? ui.errorText.textContent + " " : "";
        const why = info.reason ? ", " + info.reason : "";
        showError(before + "Disconnected (close code " + info.code + why + "): reload the page to try again.", "connection");
      }
      renderState();
    });
    client.on("error", (err) => showError(describe(err), "connection"));
    renderState();
  }

  function start(delay) {
    fetchGrant().then(connect, (err) => {
      showError("Could not get a token, retrying: " + err.message, "connection");
      setTimeout(() => start(Math.min(delay * 2, 30000)), delay);
    });
  }

  // -- the page ---------------------------------------------------------------------------------

  ui.name.value = localStorage.getItem(NAME_KEY) || "guest-" + Math.floor(1000 + Math.random() * 9000);
  localStorage.setItem(NAME_KEY, ui.name.value);
  ui.name.addEventListener("input", () => localStorage.setItem(NAME_KEY, ui.name.value.trim()));

  ui.join.addEventListener("submit", (event) => {
    event.preventDefault();
    const room = ui.roomInput.value.trim();
    if (!room || !client) return;
    ui.roomInput.value = "";
    joinRoom(room);
  });

  ui.compose.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = ui.text.value.trim();
    if (!text || !client || !active) return;
    ui.text.value = "";
    sendMessage(active, text);
  });

  $("error-close").addEventListener("click", () => {
    ui.error.hidden = true;
  });

  renderRooms();
  renderMessages();
  renderState();
  start(1000);
})();
