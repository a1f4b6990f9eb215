/** What a command (runDemo, runVhostUser) prints, captured: its `io` writes into `out` and `err`. */
export function capture(isTTY = false) {
  const out: string[] = [];
  const err: string[] = [];
  return {
    out,
    err,
    text: () => out.join(""),
    io: {
      out: { write: (s: string) => out.push(s), isTTY },
      err: { write: (s: string) => err.push(s) },
    },
  };
}
