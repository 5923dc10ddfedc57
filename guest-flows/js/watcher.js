// watcher: takes up to `count` events from `topic`, giving up on the first wait that lasts
// longer than `timeout_ms`.
import { flow } from './sluice-flow.js';

export const run = flow((ctx, input) => {
  const events = [];
  while (events.length < input.count) {
    const event = ctx.waitEvent(input.topic, input.timeout_ms);
    if (event === undefined) return { events, timed_out: true };
    events.push(event);
  }
  return { events, timed_out: false };
});
