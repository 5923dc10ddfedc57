// Write Sluice flows in JavaScript: a thin layer over the sluice:flow WIT imports.
// Payloads travel as JSON, as in the Rust SDK, and errors read the same, so one scenario
// file serves a flow's builds in every language.
//
//   import { flow } from './sluice-flow.js';
//   export const run = flow((ctx, input) => ({ greeting: `Hello, ${input.name}!` }));

import * as host from 'sluice:flow/host@0.1.0';
import * as sessions from 'sluice:flow/sessions@0.1.0';

const enc = new TextEncoder();
const dec = new TextDecoder();
const encode = (value) => enc.encode(JSON.stringify(value));
const decode = (bytes) => JSON.parse(dec.decode(bytes));

/** The text of a flow-error, as the Rust SDK writes it. */
export function describe(error) {
  switch (error.tag) {
    case 'failed': return `failed: ${error.val}`;
    case 'rejected': return `rejected: ${error.val}`;
    case 'timed-out': return 'timed out';
    default: return 'cancelled';
  }
}

/** Throw to fail the flow with this message. */
export class FlowFailure extends Error {}

/** A subflow produced no output; `error` is the WIT flow-error. */
export class SubflowError extends FlowFailure {
  constructor(flow, error) {
    super(`subflow ${flow}: ${describe(error)}`);
    this.flow = flow;
    this.error = error;
  }
}

// Host calls returning a WIT result throw with the flow-error as `payload`.
function subflow(flow, thunk) {
  try {
    return thunk();
  } catch (e) {
    if (e && e.payload !== undefined) throw new SubflowError(flow, e.payload);
    throw e;
  }
}

/** A session with a counterparty failed (unknown party, no responder, it ended). */
export class SessionError extends FlowFailure {
  constructor(party, message) {
    super(`session with ${party}: ${message}`);
    this.party = party;
  }
}

/** A session with a counterparty's flow: ordered JSON messages both ways. */
export class Session {
  constructor(inner) { this.inner = inner; }
  get counterparty() { return this.inner.counterparty(); }
  guard(thunk) {
    try {
      return thunk();
    } catch (e) {
      if (e && e.payload !== undefined) throw new SessionError(this.counterparty, e.payload);
      throw e;
    }
  }
  /** Send `value`; the first send (or receive) starts the counterparty's responder. */
  send(value) { this.guard(() => this.inner.send(encode(value))); }
  /** The counterparty's next message (a suspension point). */
  receive() { return decode(this.guard(() => this.inner.receive())); }
}

/** The running flow's view of the node. */
export class Ctx {
  constructor(invocation) { this.invocation = invocation; }
  get flowName() { return this.invocation.flow; }
  /** Start `flow` and wait for its output (a suspension point). */
  call(flow, value) { return subflow(flow, () => decode(host.call(flow, encode(value)))); }
  start(flow, value) { return { flow, id: subflow(flow, () => host.start(flow, encode(value), { priority: undefined })) }; }
  /** Wait for a child started with start (a suspension point). */
  join(child) { return subflow(child.flow, () => decode(host.join(child.id))); }
  /** Cancel a child started with start, with all its descendants; join then throws (cancelled). */
  cancel(child) { subflow(child.flow, () => host.cancel(child.id)); }
  /** Run `flow` once per value, concurrently; results in order. Throws on the first failure. */
  parallel(flow, values) {
    return host.parallel(flow, values.map(encode)).map((r) => {
      if (r.tag === 'err') throw new SubflowError(flow, r.val);
      return decode(r.val);
    });
  }
  sleep(ms) { host.sleep(BigInt(ms)); }
  nowMs() { return Number(host.now()); }
  random() { return host.random(); }
  /** Publish an event on `topic`: the next waitEvent on it takes it. */
  publish(topic, value) { host.publish(topic, encode(value)); }
  /** The next event on `topic`, or undefined when `timeoutMs` passed first (a suspension point). */
  waitEvent(topic, timeoutMs) {
    const event = host.waitEvent(topic, timeoutMs === undefined ? undefined : BigInt(timeoutMs));
    return event === undefined ? undefined : decode(event);
  }
  /** A session with `party`; its responder starts at the first send or receive. */
  openSession(party) { return new Session(new sessions.Session(party)); }
  /** In a responder flow, the session its initiator opened; undefined otherwise. */
  initiator() {
    const inner = sessions.initiator();
    return inner === undefined ? undefined : new Session(inner);
  }
  progress(step) { host.progress(step); }
  info(message) { host.log('info', message); }
}

function fail(message) {
  const e = new Error(message);
  e.payload = message; // the err(string) of the exported run
  return e;
}

/** Export `handler(ctx, input) -> output` as this component's flow: `export const run = flow(handler)`. */
export function flow(handler) {
  return (invocation, input) => {
    let value;
    try {
      value = decode(input);
    } catch (e) {
      throw fail(`bad input for ${invocation.flow}: ${e.message}`);
    }
    try {
      return encode(handler(new Ctx(invocation), value));
    } catch (e) {
      if (e instanceof FlowFailure) throw fail(e.message);
      // A JavaScript exception fails the flow with its message.
      throw fail(`${e && e.name ? e.name : 'Error'}: ${e && e.message !== undefined ? e.message : e}`);
    }
  };
}
