// hello: transforms {"name": N} into {"greeting": "Hello, N!"}.
import { flow, FlowFailure } from './sluice-flow.js';

export const run = flow((ctx, input) => {
  if (typeof input?.name !== 'string') throw new FlowFailure(`bad input for ${ctx.flowName}: missing field \`name\``);
  ctx.progress('greeting');
  return { greeting: `Hello, ${input.name}!` };
});
