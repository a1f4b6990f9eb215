/** The back-end's diagnostics. No Node built-ins here. */

export type LogLevel = "debug" | "info" | "warn" | "error";

export interface LogEntry {
  readonly level: LogLevel;
  readonly message: string;
}

export type Log = (level: LogLevel, message: string) => void;
