import { setFlagsFromString } from 'node:v8'

/**
 * What a server allocates while it starts (modules, compiled schemas, routes) mostly
 * lives on, which V8 reads as a reason to grow its young generation: to 32 MiB on
 * Node 26, resident for good, for a load that has not come (measured with `npm run
 * bench:startup-memory`). server.ts imports this module alone and the server's
 * modules only after it has run, so the young generation keeps its minimum while
 * the server loads and starts; `startupDone` lets it grow again, with the traffic
 * that needs it.
 */
setFlagsFromString('--semi-space-growth-factor=1')

export function startupDone (): void {
  // V8's default factor, the same on Node 20 to 26.
  setFlagsFromString('--semi-space-growth-factor=2')
}
