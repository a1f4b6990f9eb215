#!/usr/bin/env -S node --no-memory-reducer
// The command line: compiled to dist/ by `npm run build` (run by `npm ci` through `prepare`).
// --no-memory-reducer: V8 would otherwise shrink a young daemon's heap with full mark-compacts
// in the middle of playback, tripling its CPU per period at 125 ms (bench/README.md).
import { main } from "../dist/cli/main.js";

process.exitCode = await main(process.argv.slice(2));
