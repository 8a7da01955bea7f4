import { IEditorLanguageRegistry } from '@jupyterlab/codemirror';
import { addIcon, copyIcon } from '@jupyterlab/ui-components';
import React, { useEffect, useRef, useState } from 'react';

import {
  ICheckResult,
  IFeature,
  IFeatureStats,
  IOnlineRun,
  IViewDetail,
  featureRef,
  formatTime
} from './model';
import { requestAPI } from './request';
import { ISidebarActions } from './sidebar';

interface IDetailProps {
  name: string;
  version: number | null;
  generation: number;
  languages: IEditorLanguageRegistry | null;
  actions: ISidebarActions;
  onVersion: (version: number | null) => void;
  onBack: () => void;
}

/** The detail pane of one feature view version: schema, SQL, versions, lineage, stats. */
export function ViewDetail(props: IDetailProps): JSX.Element {
  const { name, version, generation, actions } = props;
  const [detail, setDetail] = useState<IViewDetail | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let live = true;
    setError(null);
    const query = version ? `?version=${version}` : '';
    requestAPI<IViewDetail>(`api/views/${encodeURIComponent(name)}${query}`)
      .then(found => live && setDetail(found))
      .catch(reason => live && setError((reason as Error).message));
    return () => {
      live = false;
    };
  }, [name, version, generation]);

  const back = (
    <button className="jp-FeaturesSidebar-link jp-FeaturesSidebar-back" onClick={props.onBack}>
      ← All feature views
    </button>
  );
  if (error) {
    return (
      <div className="jp-FeaturesSidebar-detail">
        {back}
        <div className="jp-FeaturesSidebar-state jp-mod-error" role="alert">
          <p className="jp-FeaturesSidebar-errorMessage">{error}</p>
          <p>Press Refresh to try again, or go back to the list.</p>
        </div>
      </div>
    );
  }
  if (!detail || detail.name !== name) {
    return (
      <div className="jp-FeaturesSidebar-detail">
        {back}
        <div className="jp-FeaturesSidebar-state jp-mod-loading">Loading {name}…</div>
      </div>
    );
  }
  const pinned = detail.version;
  const allRef = featureRef(detail.name, pinned);
  const allRefs = detail.features.map(f => featureRef(detail.name, pinned, f.name));
  return (
    <div className="jp-FeaturesSidebar-detail" data-view={detail.name}>
      {back}
      <div className="jp-FeaturesSidebar-detailHead">
        <h2 className="jp-FeaturesSidebar-detailName">{detail.name}</h2>
        <select
          className="jp-FeaturesSidebar-versionSelect"
          aria-label="Version"
          value={String(detail.version)}
          onChange={event =>
            props.onVersion(
              Number(event.target.value) === detail.latest_version
                ? null
                : Number(event.target.value)
            )
          }
        >
          {detail.versions.map(v => (
            <option key={v.version} value={String(v.version)}>
              v{v.version}
              {v.version === detail.latest_version ? ' (latest)' : ''}
            </option>
          ))}
        </select>
      </div>
      {detail.description && (
        <p className="jp-FeaturesSidebar-detailDescription">{detail.description}</p>
      )}
      <dl className="jp-FeaturesSidebar-facts">
        <dt>Owner</dt>
        <dd>{detail.owner || '—'}</dd>
        <dt>Entity</dt>
        <dd>{detail.entity.join(', ')}</dd>
        <dt>Timestamp</dt>
        <dd>
          {detail.timestamp}
          {detail.created_timestamp ? ` (ties: ${detail.created_timestamp})` : ''}
        </dd>
        {(detail.windows ?? []).length > 0 ? (
          <>
            <dt>Windows</dt>
            <dd className="jp-FeaturesSidebar-detailWindows">
              {(detail.windows ?? []).join(', ')}
              <span className="jp-FeaturesSidebar-hint">
                {' '}
                (each feature: its aggregate over the rows in (t − window, t] at each label&apos;s time t)
              </span>
            </dd>
          </>
        ) : (
          <>
            <dt>TTL</dt>
            <dd>{detail.ttl || 'none'}</dd>
          </>
        )}
        {detail.tags.length > 0 && (
          <>
            <dt>Tags</dt>
            <dd>
              {detail.tags.map(t => (
                <span key={t} className="jp-FeaturesSidebar-tag">
                  {t}
                </span>
              ))}
            </dd>
          </>
        )}
      </dl>
      <Warnings warnings={detail.warnings ?? []} />
      <div className="jp-FeaturesSidebar-actions">
        <button
          className="jp-mod-styled jp-mod-accept jp-FeaturesSidebar-insert"
          title={`Insert a cell that builds a training frame with ${allRef}`}
          onClick={() => actions.insert(allRefs, detail.entity)}
        >
          Insert into notebook
        </button>
        <button
          className="jp-mod-styled jp-FeaturesSidebar-copy"
          title={`Copy the reference ${allRef}`}
          onClick={() => actions.copy(allRef)}
        >
          Copy reference
        </button>
      </div>

      <h3>Online</h3>
      <Online runs={detail.online ?? []} check={detail.last_check ?? null} />

      <h3>Schema</h3>
      <ul className="jp-FeaturesSidebar-schema">
        {detail.features.map(f => (
          <FeatureRow
            key={f.name}
            feature={f}
            stats={detail.stats?.[f.name] ?? null}
            reference={featureRef(detail.name, pinned, f.name)}
            entity={detail.entity}
            actions={actions}
          />
        ))}
      </ul>
      {!detail.stats && (
        <p className="jp-FeaturesSidebar-note">
          No statistics were recorded with this version.
        </p>
      )}

      <h3>SQL</h3>
      <HighlightedSQL sql={detail.sql} languages={props.languages} />

      <h3>Lineage</h3>
      <Lineage detail={detail} />

      <h3>Versions</h3>
      <ul className="jp-FeaturesSidebar-versions">
        {detail.versions.map(v => (
          <li
            key={v.version}
            className={v.version === detail.version ? 'jp-mod-current' : ''}
            data-version={v.version}
          >
            <button
              className="jp-FeaturesSidebar-link"
              onClick={() => props.onVersion(v.version === detail.latest_version ? null : v.version)}
            >
              v{v.version}
            </button>
            <span className="jp-FeaturesSidebar-when">{formatTime(v.created_at)}</span>
            <span className="jp-FeaturesSidebar-who">{v.created_by}</span>
            <code className="jp-FeaturesSidebar-hash" title={v.hash}>
              {v.hash.slice(0, 8)}
            </code>
          </li>
        ))}
      </ul>
    </div>
  );
}

interface IRowProps {
  feature: IFeature;
  stats: IFeatureStats | null;
  reference: string;
  entity: string[];
  actions: ISidebarActions;
}

function FeatureRow(props: IRowProps): JSX.Element {
  const { feature, stats, reference, actions } = props;
  return (
    <li className="jp-FeaturesSidebar-feature" data-feature={feature.name}>
      <div className="jp-FeaturesSidebar-featureHead">
        <span className="jp-FeaturesSidebar-featureName">{feature.name}</span>
        <span className="jp-FeaturesSidebar-type" title={feature.duckdb_type}>
          {feature.type}
        </span>
        <span className="jp-FeaturesSidebar-rowActions">
          <button
            className="jp-FeaturesSidebar-iconButton"
            title={`Copy ${reference}`}
            aria-label={`Copy ${reference}`}
            onClick={() => actions.copy(reference)}
          >
            <copyIcon.react tag="span" />
          </button>
          <button
            className="jp-FeaturesSidebar-iconButton"
            title={`Insert a training frame cell with ${reference}`}
            aria-label={`Insert ${reference}`}
            onClick={() => actions.insert([reference], props.entity)}
          >
            <addIcon.react tag="span" />
          </button>
        </span>
      </div>
      {feature.description && (
        <div className="jp-FeaturesSidebar-featureDoc">{feature.description}</div>
      )}
      {stats && <Stats stats={stats} />}
    </li>
  );
}

function formatValue(value: unknown): string {
  if (value === null || value === undefined) {
    return '—';
  }
  if (typeof value === 'number') {
    return Number.isInteger(value) ? String(value) : value.toPrecision(3);
  }
  return String(value);
}

function Stats(props: { stats: IFeatureStats }): JSX.Element {
  const { stats } = props;
  const parts: string[] = [];
  if (typeof stats.null_rate === 'number') {
    parts.push(`null ${(stats.null_rate * 100).toFixed(stats.null_rate < 0.1 ? 1 : 0)}%`);
  }
  if (stats.min !== undefined && stats.max !== undefined && stats.min !== null) {
    parts.push(`${formatValue(stats.min)} … ${formatValue(stats.max)}`);
  }
  if (typeof stats.mean === 'number') {
    parts.push(`mean ${formatValue(stats.mean)}`);
  }
  return (
    <div className="jp-FeaturesSidebar-stats">
      {stats.bins && stats.bins.length > 0 && <Histogram bins={stats.bins} />}
      <span className="jp-FeaturesSidebar-statText">{parts.join(' · ')}</span>
    </div>
  );
}

/** A small bar histogram of [start, end, count] bins. */
function Histogram(props: { bins: [number, number, number][] }): JSX.Element {
  const width = 120;
  const height = 26;
  const peak = Math.max(1, ...props.bins.map(b => b[2]));
  const bar = width / props.bins.length;
  return (
    <svg
      className="jp-FeaturesSidebar-histogram"
      width={width}
      height={height}
      viewBox={`0 0 ${width} ${height}`}
      role="img"
      aria-label="histogram"
    >
      {props.bins.map(([start, end, count], i) => {
        const h = count === 0 ? 0 : Math.max(1, (count / peak) * height);
        return (
          <rect key={i} x={i * bar + 0.5} y={height - h} width={Math.max(1, bar - 1)} height={h}>
            <title>{`${formatValue(start)} – ${formatValue(end)}: ${count}`}</title>
          </rect>
        );
      })}
    </svg>
  );
}

function HighlightedSQL(props: {
  sql: string;
  languages: IEditorLanguageRegistry | null;
}): JSX.Element {
  const ref = useRef<HTMLPreElement>(null);
  useEffect(() => {
    const el = ref.current;
    if (!el) {
      return;
    }
    el.textContent = props.sql;
    const languages = props.languages;
    if (languages) {
      // Highlight off-screen, then swap in: the plain text stays if highlighting fails.
      const target = document.createElement('div');
      languages
        .highlight(props.sql, languages.findBest('sql'), target)
        .then(() => el.replaceChildren(...Array.from(target.childNodes)))
        .catch(() => undefined);
    }
  }, [props.sql, props.languages]);
  return <pre ref={ref} className="jp-FeaturesSidebar-sql cm-s-jupyter language-sql" />;
}

function Lineage(props: { detail: IViewDetail }): JSX.Element {
  const { detail } = props;
  const features = Object.keys(detail.lineage);
  const models = Object.entries(detail.used_by);
  return (
    <div className="jp-FeaturesSidebar-lineage">
      {detail.sources.length > 0 && (
        <div className="jp-FeaturesSidebar-sources">
          Sources:{' '}
          {detail.sources.map(s => (
            <span key={s} className="jp-FeaturesSidebar-source">
              {s}
            </span>
          ))}
        </div>
      )}
      {features.length === 0 ? (
        <p className="jp-FeaturesSidebar-note">No column lineage was recorded.</p>
      ) : (
        <ul className="jp-FeaturesSidebar-lineageList">
          {features.map(f => (
            <li key={f} data-feature={f}>
              <span className="jp-FeaturesSidebar-columns">
                {detail.lineage[f].join(', ') || '(no source column)'}
              </span>
              <span className="jp-FeaturesSidebar-arrow">→</span>
              <span className="jp-FeaturesSidebar-featureName">{f}</span>
            </li>
          ))}
        </ul>
      )}
      {models.length > 0 && (
        <div className="jp-FeaturesSidebar-usedBy">
          Used by:{' '}
          {models.map(([model, refs]) => (
            <span key={model} className="jp-FeaturesSidebar-model" title={refs.join(', ')}>
              {model}
            </span>
          ))}
        </div>
      )}
    </div>
  );
}

/** Models whose features are not all served online. */
export function Warnings(props: { warnings: string[] }): JSX.Element | null {
  if (props.warnings.length === 0) {
    return null;
  }
  return (
    <div className="jp-FeaturesSidebar-warnings" role="alert">
      {props.warnings.map(w => (
        <div key={w} className="jp-FeaturesSidebar-warning">
          ⚠ {w}
        </div>
      ))}
    </div>
  );
}

function count(n: number | null, what: string): string {
  return `${(n ?? 0).toLocaleString()} ${what}`;
}

/** Where the view is materialized (the latest run in each store) and its last check_online. */
function Online(props: { runs: IOnlineRun[]; check: ICheckResult | null }): JSX.Element {
  const { runs, check } = props;
  return (
    <div className="jp-FeaturesSidebar-online">
      {runs.length === 0 ? (
        <p className="jp-FeaturesSidebar-note">
          Not materialized in any online store the registry has heard of.
        </p>
      ) : (
        <ul className="jp-FeaturesSidebar-runs">
          {runs.map(run => (
            <li key={run.store} data-store={run.store}>
              <code className="jp-FeaturesSidebar-store" title={run.store}>
                {run.store}
              </code>
              <span className="jp-FeaturesSidebar-runFacts">
                {run.view_version !== null ? `v${run.view_version}` : 'session view'}
                {run.end ? ` · last run ended ${formatTime(run.end)}` : ''}
                {run.rows !== null ? ` · ${count(run.rows, 'entities')}` : ''}
                {run.mode ? ` · ${run.mode}` : ''}
              </span>
              <span className="jp-FeaturesSidebar-when">
                {run.at ? `materialized ${formatTime(run.at)}` : ''}
                {run.actor ? ` by ${run.actor}` : ''}
              </span>
            </li>
          ))}
        </ul>
      )}
      {check === null ? (
        <p className="jp-FeaturesSidebar-note">
          Never checked against an offline recompute: run <code>ws.check_online</code>.
        </p>
      ) : (
        <div className="jp-FeaturesSidebar-check" data-ok={String(check.ok)}>
          <span className={`jp-FeaturesSidebar-badge ${check.ok ? 'jp-mod-ok' : 'jp-mod-bad'}`}>
            {check.ok
              ? '✓ consistent'
              : check.problem
                ? '✗ not checked'
                : `✗ ${count(check.values, 'values differ')}, ${count(check.missing, 'missing')}, ${count(check.extra, 'extra')}`}
          </span>
          <span className="jp-FeaturesSidebar-checkFacts">
            {check.problem
              ? check.problem
              : `${count(check.entities, 'entities')}${check.sample !== null ? ' sampled' : ''} compared`}
            {check.at ? ` · checked ${formatTime(check.at)}` : ''}
            {` · ${check.store}`}
          </span>
        </div>
      )}
    </div>
  );
}
