/**
 * What the back-end's checks come to: a value, or a refusal with the reason
 * to log. Decoders, the memory table, the rings and the message handlers all
 * answer with these, so a refusal passes up unchanged (`if (!r.ok) return r`)
 * and nothing a front-end sends has to be thrown.
 *
 * No Node built-ins here.
 */

/** The front-end's message is refused, for `reason`. */
export interface Refusal {
  readonly ok: false;
  readonly reason: string;
}

/** A checked value, or the refusal that stands in its place. */
export type Result<T> = { readonly ok: true; readonly value: T } | Refusal;

/** How a message was handled: accepted, with the reply payload when it has one, or refused. */
export type Outcome = Result<Uint8Array | undefined>;

export const ok = <T>(value: T): Result<T> => ({ ok: true, value });

export const refuse = (reason: string): Refusal => ({ ok: false, reason });

/** Accepted, no reply payload. */
export const ACCEPTED: Outcome = ok(undefined);

/** Accepted, answering with `payload`. */
export const reply = (payload: Uint8Array): Outcome => ok(payload);

/** The message of a thrown value, for a refusal's reason. */
export function reasonOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function hex(v: bigint | number): string {
  return `0x${v.toString(16)}`;
}
