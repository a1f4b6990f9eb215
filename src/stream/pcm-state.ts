/**
 * The PCM command lifecycle of §5.14.6.6.1. `Idle` is the state before the
 * first SET_PARAMS (and after a device reset): nothing is configured yet.
 */
export enum PcmState {
  Idle = 0,
  ParamsSet = 1,
  Prepared = 2,
  Running = 3,
  Stopped = 4,
  Released = 5,
}

export const PCM_STATE_NAMES = ["idle", "params-set", "prepared", "running", "stopped", "released"] as const;

/** The control commands that move a stream between states. */
export enum PcmCommand {
  SetParams = 0,
  Prepare = 1,
  Start = 2,
  Stop = 3,
  Release = 4,
}

/**
 * allowed[command] is the set of states the command may be sent in, as bits
 * (1 << PcmState). From §5.14.6.6.1, read as "after X the valid commands are":
 *   SET_PARAMS -> set params, prepare
 *   PREPARE    -> set params, prepare, start, release
 *   START      -> stop
 *   STOP       -> start, release
 *   RELEASE    -> set params, prepare
 * plus SET_PARAMS as the first command of a stream.
 */
const S = (s: PcmState): number => 1 << s;
const ALLOWED: readonly number[] = [
  /* SetParams */ S(PcmState.Idle) | S(PcmState.ParamsSet) | S(PcmState.Prepared) | S(PcmState.Released),
  /* Prepare */ S(PcmState.ParamsSet) | S(PcmState.Prepared) | S(PcmState.Released),
  /* Start */ S(PcmState.Prepared) | S(PcmState.Stopped),
  /* Stop */ S(PcmState.Running),
  /* Release */ S(PcmState.Prepared) | S(PcmState.Stopped),
];

export function commandAllowed(command: PcmCommand, state: PcmState): boolean {
  return (ALLOWED[command]! & S(state)) !== 0;
}

/** States in which I/O messages are accepted and queued (§5.14.6.8: data flows between PREPARE and RELEASE). */
export function acceptsIo(state: PcmState): boolean {
  return state === PcmState.Prepared || state === PcmState.Running || state === PcmState.Stopped;
}
