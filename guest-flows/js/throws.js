// throws: throws a JavaScript exception carrying `message`.
import { flow } from './sluice-flow.js';

export const run = flow((ctx, input) => {
  throw new TypeError(input.message);
});
