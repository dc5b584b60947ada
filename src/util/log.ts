// Logging: one line per event on stderr, as `key=value` text or as one JSON object a line. A field may be
// an object (the counters): nested in JSON, compact JSON as the value in text.

/** A field's value: undefined fields are left out. */
export type LogValue = string | number | boolean | null | undefined | { readonly [key: string]: LogValue };
export type LogFields = Readonly<Record<string, LogValue>>;
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
      const line: Record<string, LogValue> = { time: new Date().toISOString(), level, event };
      // A field never hides what the line is (a VM's events come relayed from the engine).
      for (const [k, v] of Object.entries(fields)) line[k in line ? `field_${k}` : k] = v;
      this.write(`${JSON.stringify(line)}\n`);
      return;
    }
    let line = `softnet: ${level === 'info' ? '' : `${level}: `}${event}`;
    for (const [k, v] of Object.entries(fields)) {
      if (v === undefined) continue;
      line += ` ${k}=${textValue(v)}`;
    }
    this.write(`${line}\n`);
  }
}

/** A field's value in a text line: bare when it has no space, quote or '=' (an object: no space), else quoted. */
function textValue(v: LogValue): string {
  if (typeof v === 'object' && v !== null) {
    const json = JSON.stringify(v);
    return /\s/.test(json) ? JSON.stringify(json) : json;
  }
  const s = String(v);
  return /[\s"=]/.test(s) || s === '' ? JSON.stringify(s) : s;
}
