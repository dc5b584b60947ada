// Logging: one line per event on stderr, as `key=value` text or as one JSON object a line.

export type LogFields = Record<string, string | number | boolean | null | undefined>;
export type LogFormat = 'text' | 'json';
export type LogLevel = 'info' | 'warn' | 'error';

/** Told of every event a logger writes (the engine passes a VM's own events to its per-VM process). */
export type LogListener = (level: LogLevel, event: string, fields: LogFields) => void;

/** Writes events; nothing on the hot path logs (drops are counted instead). */
export class Logger {
  constructor(
    readonly format: LogFormat = 'text',
    private readonly write: (line: string) => void = (line) => process.stderr.write(line),
    private readonly listener: LogListener | null = null,
  ) {}

  /** A logger writing where this one does that also tells `listener` of each event. */
  with(listener: LogListener): Logger {
    return new Logger(this.format, this.write, listener);
  }

  /**
   * A logger that holds its lines until release(), then writes them and goes on writing: a start that
   * fails prints its one error line and nothing of what set-up said before.
   */
  held(): { log: Logger; release(): void } {
    const lines: string[] = [];
    let holding = true;
    const log = new Logger(
      this.format,
      (line) => (holding ? lines.push(line) : this.write(line)),
      this.listener,
    );
    return {
      log,
      release: () => {
        holding = false;
        for (const line of lines.splice(0)) this.write(line);
      },
    };
  }

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

  /** Logs an event at `level`. */
  emit(level: LogLevel, event: string, fields: LogFields): void {
    this.listener?.(level, event, fields);
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
