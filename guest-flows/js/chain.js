// chain: calls itself with depth - 1 until depth 0; returns {"depth": d, "sum": d + … + 0}.
// With "next", calls that flow instead of itself (a chain across languages).
import { flow } from './sluice-flow.js';

export const run = flow((ctx, input) => {
  if (input.depth === 0) return { depth: 0, sum: 0 };
  const below = ctx.call(input.next ?? ctx.flowName, { depth: input.depth - 1 });
  return { depth: input.depth, sum: below.sum + input.depth };
});
