/** The JSON the server extension answers with (jupyter_features/serverext/catalog.py). */

export const FACETS = ['entity', 'type', 'owner', 'tag', 'used_by'] as const;
export type Facet = (typeof FACETS)[number];

export const FACET_LABELS: Record<Facet, string> = {
  entity: 'Entity',
  type: 'Type',
  owner: 'Owner',
  tag: 'Tag',
  used_by: 'Used by'
};

export interface IFeatureSummary {
  name: string;
  type: string;
  description: string;
}

export interface IViewSummary {
  name: string;
  version: number;
  created_at: string | null;
  created_by: string;
  description: string;
  owner: string;
  tags: string[];
  entity: string[];
  /** A windowed view's windows as written ('1h', '24h', '7d'); empty for a plain view. */
  windows?: string[];
  features: IFeatureSummary[];
  /** Models using features of this view that no online store serves. */
  warnings?: string[];
}

export interface IFacetValue {
  value: string;
  count: number;
}

export interface ISearchResult {
  url: string;
  total: number;
  matched: number;
  views: IViewSummary[];
  facets: Record<Facet, IFacetValue[]>;
  message?: string;
}

export interface IFeature extends IFeatureSummary {
  duckdb_type?: string;
  vocabulary?: string[];
}

/** Per-feature statistics, as jupyter_features.profile.ColumnProfile holds them. */
export interface IFeatureStats {
  count?: number;
  nulls?: number;
  null_rate?: number;
  distinct?: number | null;
  min?: unknown;
  max?: unknown;
  mean?: number | null;
  /** Histogram bins: [start, end, count]. */
  bins?: [number, number, number][];
}

export interface IVersionInfo {
  version: number;
  created_at: string | null;
  created_by: string;
  hash: string;
}

/** The latest materialization of a view in one online store (from the registry's activity log). */
export interface IOnlineRun {
  store: string;
  version: number | null;
  view_version: number | null;
  end: string | null;
  mode: string | null;
  rows: number | null;
  at: string | null;
  actor: string | null;
  features: string[] | null;
}

/** The latest `check_online` of a view (from the registry's activity log). */
export interface ICheckResult {
  store: string;
  ok: boolean;
  at: string | null;
  actor: string | null;
  version: number | null;
  view_version: number | null;
  end: string | null;
  entities: number | null;
  mismatched: number | null;
  values: number | null;
  missing: number | null;
  extra: number | null;
  sample: number | null;
  problem: string;
}

export interface IViewDetail extends IViewSummary {
  latest_version: number;
  hash: string;
  sql: string;
  timestamp: string | null;
  created_timestamp: string | null;
  ttl: string | null;
  features: IFeature[];
  sources: string[];
  lineage: Record<string, string[]>;
  used_by: Record<string, string[]>;
  stats: Record<string, IFeatureStats> | null;
  versions: IVersionInfo[];
  online: IOnlineRun[];
  last_check: ICheckResult | null;
  warnings: string[];
}

/** A feature reference: `view@version:feature` (feature `*` for all). */
export function featureRef(view: string, version: number | null, feature = '*'): string {
  return `${view}${version ? `@${version}` : ''}:${feature}`;
}

/**
 * The notebook cell that builds a training frame with `refs`.
 *
 * Names come from the registry: untrusted text. Each one is written as a Python
 * string literal (`pyString`), never as code, so no name can add a line to the cell.
 */
export function trainingFrameCell(refs: string[], entity: string[]): string {
  const keys = entity.length ? `the entity keys ${pyList(entity)}` : 'the entity keys';
  return [
    'import jupyter_features as jf',
    '',
    'ws = jf.workspace()',
    `# labels: a DataFrame (or SQL) with ${keys} and the label time column label_ts`,
    `train = ws.training_frame(labels, ${pyList(refs)}, timestamp="label_ts")`,
    'train.head()'
  ].join('\n');
}

/**
 * A Python string literal holding `text`: printable ASCII as is (`"` and `\` escaped),
 * everything else (control characters, U+2028, any non-ASCII) as a \x, \u or \U
 * escape. The literal is one line of printable ASCII: safe anywhere in a cell, even
 * in a comment (JSON.stringify would leave U+2028 raw).
 */
export function pyString(text: string): string {
  let out = '"';
  for (const char of text) {
    const code = char.codePointAt(0) ?? 0;
    if (char === '"' || char === '\\') {
      out += `\\${char}`;
    } else if (code >= 0x20 && code < 0x7f) {
      out += char;
    } else if (code <= 0xff) {
      out += `\\x${code.toString(16).padStart(2, '0')}`;
    } else if (code <= 0xffff) {
      out += `\\u${code.toString(16).padStart(4, '0')}`;
    } else {
      out += `\\U${code.toString(16).padStart(8, '0')}`;
    }
  }
  return `${out}"`;
}

/** A Python list literal of strings. */
export function pyList(items: string[]): string {
  return `[${items.map(pyString).join(', ')}]`;
}

/** A short, local date and time for an ISO timestamp (one without a zone is UTC). */
export function formatTime(iso: string | null): string {
  if (!iso) {
    return '';
  }
  const zoned = /(Z|[+-]\d\d:?\d\d)$/.test(iso) || !iso.includes('T') ? iso : `${iso}Z`;
  const date = new Date(zoned);
  if (isNaN(date.getTime())) {
    return iso;
  }
  return date.toLocaleString(undefined, {
    year: 'numeric',
    month: 'short',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit'
  });
}
