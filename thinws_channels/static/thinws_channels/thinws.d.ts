// Type declarations of thinws.js / thinws.mjs, the JavaScript client of thinws-channels.
// How to use it: docs/client-js.md; the wire protocol: docs/protocol.md.

/** Any JSON value: what a room message carries. */
export type JSONValue = null | boolean | number | string | JSONValue[] | { [key: string]: JSONValue };

/** The client's name for a frame, echoed in the reply. */
export type MessageID = number | string;

/** The server's reply to a call. `id` is set on the ack of `send()`: the server's message id. */
export interface AckFrame {
  type: "ack";
  messageID: MessageID | null;
  id?: string;
  [key: string]: unknown;
}

/** The ack of `connect`, as the "open" event gets it. */
export interface ConnectAck extends AckFrame {
  protocol: number;
  connectionID: string;
  rooms: string[];
  /** The server's INSTANCE_NAME setting, when it is set. */
  instance?: string;
}

export interface OpenEvent extends ConnectAck {
  /** false for the first connect after open() (or the constructor), true afterwards. */
  reconnected: boolean;
}

export interface ErrorFrame {
  type: "error";
  messageID: MessageID | null;
  code: string;
  message: string;
  [key: string]: unknown;
}

/** A room message. Your own messages come back too: their messageID is your send's ack.id. */
export interface MessageFrame {
  type: "message";
  roomID: string;
  payload: JSONValue;
  /** The sender's connectionID. */
  connectionID: string;
  /** The server's id of the message (the same as the `id` of the sender's ack). */
  messageID: string;
  /** The payload again, for 1.0.x clients (sent with the legacy key, or LEGACY_MESSAGE_KEY on). */
  message?: JSONValue;
  [key: string]: unknown;
}

export interface CloseEvent {
  code: number;
  reason: string;
  willReconnect: boolean;
}

export interface ReconnectingEvent {
  /** 1 for the first attempt after a loss; reset by a successful connect. */
  attempt: number;
  /** ms before the attempt starts. */
  delay: number;
}

export type ClientState = "connecting" | "open" | "reconnecting" | "closed";

/** The server's error codes (docs/protocol.md#errors) and the client's own ones. */
export type ErrorCode =
  | "invalid_json" | "unsupported_data" | "invalid_envelope" | "unknown_type" | "not_connected"
  | "already_connected" | "forbidden" | "not_subscribed" | "too_large" | "rate_limited"
  | "limit_exceeded" | "unavailable" | "internal"
  | "timeout" | "closed" | "queue_full" | "disconnected"
  | (string & {});

export declare class ThinWSError extends Error {
  constructor(code: string, message: string, messageID?: MessageID | null, frame?: ErrorFrame | null);
  readonly name: "ThinWSError";
  /** The server's error code, or "timeout" | "closed" | "queue_full" | "disconnected". */
  readonly code: ErrorCode;
  /** The messageID of the call (or of the error frame); null when none. */
  readonly messageID: MessageID | null;
  /** The server's error frame, or null for the client's own errors. */
  readonly frame: ErrorFrame | null;
}

/** The constructor of a WebSocket (the browser's, Node's global one, or the `ws` package's). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface ThinWSOptions {
  /** A signed token (thinws_channels.tokens.issue_token), or a function giving one; called
   * before every connect. */
  token?: string | null | (() => string | null | Promise<string | null>);
  /** Default: globalThis.WebSocket. */
  WebSocket?: WebSocketConstructor | null;
  /** ms from sending a call's frame to its ack (default 10000). */
  requestTimeout?: number;
  /** ms from creating a socket to the ack of its connect (default 10000). */
  connectTimeout?: number;
  /** Reconnect delays (ms): random(0, min(backoffMax, backoffInitial * backoffFactor ** (attempt - 1))). */
  backoffInitial?: number;
  backoffMax?: number;
  backoffFactor?: number;
  /** Calls kept while not connected, 0..50 (default 50); beyond it calls reject "queue_full". */
  queueLimit?: number;
  /** Default true; false: call open() yourself. */
  autoConnect?: boolean;
  /** Default true. */
  reconnect?: boolean;
}

export interface ThinWSEvents {
  open: OpenEvent;
  close: CloseEvent;
  reconnecting: ReconnectingEvent;
  message: MessageFrame;
  error: ThinWSError;
  state: ClientState;
  /** A copy of the new `rooms`: after every connect ack (before "open"), and whenever the list
   * changes (a subscribe/unsubscribe ack, another socket of the connectionID joining or leaving). */
  rooms: string[];
}

/** A Promise of the ack of send(), which also carries the frame's messageID at once. */
export interface SendPromise extends Promise<AckFrame> {
  readonly messageID: number;
}

export declare class ThinWSClient {
  /** The 1.0.x form: onMessage gets the raw text of every frame; onOpen is called after each
   * connect; timeout (ms) is used as backoffInitial. Any of the three may be the options. */
  constructor(
    url: string | string[] | (() => string),
    connectionID: string,
    onMessage?: ((text: string) => void) | null,
    onOpen?: (() => void) | null,
    options?: ThinWSOptions | number,
  );
  constructor(url: string | string[] | (() => string), connectionID: string, options: ThinWSOptions);

  /** The 1.0.x client's connectionID for `str` (a 32-bit hash, in decimal). */
  static legacyConnectionID(str: string): string;

  readonly state: ClientState;
  /** The rooms this connectionID is in (a copy). */
  readonly rooms: string[];
  readonly connectionID: string;
  /** The number of calls waiting for a connection. */
  readonly queued: number;
  /** The `instance` of the last connect ack, or null. */
  readonly instance: string | null;

  subscribe(roomID: string): Promise<AckFrame>;
  unsubscribe(roomID: string): Promise<AckFrame>;
  /** Payload first, roomID second (as in 1.0.x). Resolves with the ack; ack.id is the server's id. */
  send(payload: JSONValue, roomID: string): SendPromise;
  /** Ends the session; no reconnect follows. Resolves with null when it was not connected. */
  disconnect(): Promise<AckFrame | null>;
  /** Stops for good (until open()): pending and queued calls reject with code "closed". */
  close(): void;
  /** Starts connecting (after autoConnect: false, or after close()). */
  open(): void;
  /** Adds a listener; returns a function that removes it. */
  on<E extends keyof ThinWSEvents>(event: E, listener: (arg: ThinWSEvents[E]) => unknown): () => void;
  off<E extends keyof ThinWSEvents>(event: E, listener: (arg: ThinWSEvents[E]) => unknown): void;
  /** The underlying WebSocket's readyState, or 3 (CLOSED) when there is none. */
  getReadyState(): number;
}

declare global {
  interface Window {
    ThinWSClient: typeof ThinWSClient;
    ThinWSError: typeof ThinWSError;
  }
}
