// Prometheus's text exposition format, version 0.0.4: for each metric family a `# HELP` and a `# TYPE`
// line, then one line per sample, `name{label="value",...} number`. Label values escape backslash, double
// quote and newline; help text escapes backslash and newline. A family's samples stay together and a name
// appears once, as the format requires.

/** The metric types softnet exposes. */
export type MetricType = 'counter' | 'gauge';
/** A sample's labels, by name. */
export type Labels = Readonly<Record<string, string>>;
/** The content type of this format, for the HTTP response. */
export const EXPOSITION_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** A label value as it goes between the quotes. */
export function escapeLabelValue(v: string): string {
  return v.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
}

/** Help text as it goes after `# HELP name`. */
export function escapeHelp(v: string): string {
  return v.replace(/[\\\n]/g, (c) => (c === '\n' ? '\\n' : '\\\\'));
}

/** A sample value: an integer as digits, NaN and the infinities by their exposition names. */
export function formatValue(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Number.POSITIVE_INFINITY) return '+Inf';
  if (n === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(n);
}

/** An exposition being written, family by family. */
export class Exposition {
  private readonly lines: string[] = [];
  private readonly names = new Set<string>();

  /**
   * Adds family `name` of `type` with its samples; throws on a name or label name the format does not
   * allow, or a family added twice (programming errors, never input).
   */
  family(name: string, type: MetricType, help: string, samples: Iterable<readonly [Labels, number]>): this {
    if (!METRIC_NAME.test(name)) throw new Error(`bad metric name '${name}'`);
    if (this.names.has(name)) throw new Error(`metric ${name} given twice`);
    this.names.add(name);
    this.lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) {
      const pairs = Object.entries(labels).map(([k, v]) => {
        if (!LABEL_NAME.test(k) || k.startsWith('__')) throw new Error(`bad label name '${k}'`);
        return `${k}="${escapeLabelValue(v)}"`;
      });
      this.lines.push(`${name}${pairs.length > 0 ? `{${pairs.join(',')}}` : ''} ${formatValue(value)}`);
    }
    return this;
  }

  /** The exposition: every line, each ending in a newline. */
  text(): string {
    return this.lines.length === 0 ? '' : `${this.lines.join('\n')}\n`;
  }
}
