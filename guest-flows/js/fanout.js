// fanout: starts n children of flow `child` (default hello) and awaits them all, in order.
// Each child gets `input` when given, else {"name": "child-<i>"}; "parallel": true uses one
// parallel host call instead of start + join.
import { flow } from './sluice-flow.js';

export const run = flow((ctx, input) => {
  const child = input.child ?? 'hello';
  const inputs = Array.from({ length: input.n }, (_, i) => ('input' in input ? input.input : { name: `child-${i}` }));
  let results;
  if (input.parallel) {
    results = ctx.parallel(child, inputs);
  } else {
    const children = inputs.map((i) => ctx.start(child, i));
    results = children.map((c) => ctx.join(c));
  }
  ctx.progress('fanned out');
  return { results };
});
