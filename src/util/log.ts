// Logging: one line per event on stderr, as `key=value` text or as one JSON object a line.

export type LogFields = Record<string, string | number | boolean | null | undefined>;
export type LogFormat = 'text' | 'json';

/** Writes events; nothing on the hot path logs (drops are counted instead). */
export class Logger {
  constructor(
    private readonly format: LogFormat = 'text',
    private readonly write: (line: string) => void = (line) => process.stderr.write(line),
  ) {}

  /** Logs an event at info level. */
  info(event: string, fields: LogFields = {}): void {
    this.emit('info', event, fields);
  }

  /** Logs an event at warning level. */
  warn(event: string, fields: LogFields = {}): void {
    this.emit('warn', event, fields);
  }

  /** Logs an event at error level. */
  error(event: string, fields: LogFields = {}): void {
    this.emit('error', event, fields);
  }

  private emit(level: string, event: string, fields: LogFields): void {
    if (this.format === 'json') {
      this.write(`${JSON.stringify({ time: new Date().toISOString(), level, event, ...fields })}\n`);
      return;
    }
    let line = `softnet: ${level === 'info' ? '' : `${level}: `}${event}`;
    for (const [k, v] of Object.entries(fields)) {
      if (v === undefined) continue;
      const s = String(v);
      line += ` ${k}=${/[\s"=]/.test(s) || s === '' ? JSON.stringify(s) : s}`;
    }
    this.write(`${line}\n`);
  }
}
