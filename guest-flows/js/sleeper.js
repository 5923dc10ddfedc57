// sleeper: sleeps `ms` milliseconds, `times` times (default once).
import { flow } from './sluice-flow.js';

export const run = flow((ctx, input) => {
  const times = input.times ?? 1;
  for (let i = 0; i < times; i++) ctx.sleep(input.ms);
  return { slept_ms: input.ms * times };
});
