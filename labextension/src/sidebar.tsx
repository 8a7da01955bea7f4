import { IEditorLanguageRegistry } from '@jupyterlab/codemirror';
import { ReactWidget, refreshIcon, searchIcon } from '@jupyterlab/ui-components';
import { ISignal, Signal } from '@lumino/signaling';
import React, { useEffect, useRef, useState } from 'react';

import { featuresIcon } from './icons';
import {
  FACET_LABELS,
  FACETS,
  Facet,
  ISearchResult,
  IViewSummary
} from './model';
import { queryString, requestAPI } from './request';
import { ViewDetail } from './viewDetail';

/** What the sidebar remembers across reloads. */
export interface ISidebarState {
  query: string;
  filters: Partial<Record<Facet, string>>;
  selected: { name: string; version: number | null } | null;
}

/** What the sidebar asks of the rest of JupyterLab. */
export interface ISidebarActions {
  /** Insert a cell building a training frame with `refs` into the active notebook. */
  insert(refs: string[], entity: string[]): void;
  /** Copy a feature reference to the clipboard. */
  copy(ref: string): void;
}

const HINT =
  'Check [registry] url in features.toml or the JUPYTER_FEATURES_REGISTRY environment ' +
  'variable of the Jupyter server, then press Refresh.';

/**
 * The Features sidebar: search and facet filters over the registry's feature
 * views, and a detail pane for the selected one.
 */
export class FeaturesSidebar extends ReactWidget {
  constructor(
    private readonly actions: ISidebarActions,
    private readonly languages: IEditorLanguageRegistry | null
  ) {
    super();
    this.id = 'jupyter-features-sidebar';
    this.addClass('jp-FeaturesSidebar');
    this.title.icon = featuresIcon;
    this.title.caption = 'Features: browse the feature registry';
  }

  /** Emitted when the search, filters or selection change (to be saved). */
  get stateChanged(): ISignal<this, ISidebarState> {
    return this._stateChanged;
  }

  get state(): ISidebarState {
    return this._state;
  }

  set state(state: ISidebarState) {
    this._state = state;
    this._stateChanged.emit(state);
    this.update();
  }

  /** Read the registry again (after an export, or on the Refresh button). */
  refresh(): void {
    this._generation += 1;
    this.update();
  }

  protected render(): JSX.Element {
    return (
      <SidebarView
        state={this._state}
        generation={this._generation}
        onState={state => (this.state = state)}
        onRefresh={() => this.refresh()}
        actions={this.actions}
        languages={this.languages}
      />
    );
  }

  private _state: ISidebarState = { query: '', filters: {}, selected: null };
  private _generation = 0;
  private _stateChanged = new Signal<this, ISidebarState>(this);
}

interface IViewProps {
  state: ISidebarState;
  generation: number;
  onState: (state: ISidebarState) => void;
  onRefresh: () => void;
  actions: ISidebarActions;
  languages: IEditorLanguageRegistry | null;
}

function SidebarView(props: IViewProps): JSX.Element {
  const { state, generation, onState, onRefresh } = props;
  const [result, setResult] = useState<ISearchResult | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const latest = useRef(0);

  useEffect(() => {
    const ticket = ++latest.current;
    setLoading(true);
    const timer = window.setTimeout(async () => {
      try {
        const found = await requestAPI<ISearchResult>(
          `api/views${queryString({ q: state.query, ...state.filters })}`
        );
        if (ticket === latest.current) {
          setResult(found);
          setError(null);
        }
      } catch (reason) {
        if (ticket === latest.current) {
          setError((reason as Error).message);
        }
      } finally {
        if (ticket === latest.current) {
          setLoading(false);
        }
      }
    }, 150);
    return () => window.clearTimeout(timer);
  }, [state.query, JSON.stringify(state.filters), generation]);

  const setFilter = (facet: Facet, value: string) => {
    const filters = { ...state.filters, [facet]: value || undefined };
    onState({ ...state, filters });
  };
  const activeFilters = Object.values(state.filters).filter(Boolean).length;

  return (
    <div className="jp-FeaturesSidebar-body">
      <div className="jp-FeaturesSidebar-header">
        <span className="jp-FeaturesSidebar-title">Features</span>
        <button
          className="jp-FeaturesSidebar-iconButton jp-mod-refresh"
          title="Refresh: read the registry again"
          aria-label="Refresh"
          onClick={onRefresh}
        >
          <refreshIcon.react tag="span" />
        </button>
      </div>
      {result?.url && (
        <div className="jp-FeaturesSidebar-registry" title={result.url}>
          registry: {result.url}
        </div>
      )}
      <label className="jp-FeaturesSidebar-search">
        <searchIcon.react tag="span" className="jp-FeaturesSidebar-searchIcon" />
        <input
          type="search"
          placeholder="Search feature views and features…"
          aria-label="Search feature views"
          value={state.query}
          onChange={event => onState({ ...state, query: event.target.value })}
        />
      </label>
      <div className="jp-FeaturesSidebar-facets">
        {FACETS.map(facet => (
          <label key={facet} className="jp-FeaturesSidebar-facet">
            <span>{FACET_LABELS[facet]}</span>
            <select
              data-facet={facet}
              value={state.filters[facet] ?? ''}
              onChange={event => setFilter(facet, event.target.value)}
            >
              <option value="">any</option>
              {(result?.facets[facet] ?? []).map(v => (
                <option key={v.value} value={v.value}>
                  {v.value} ({v.count})
                </option>
              ))}
              {state.filters[facet] &&
                !(result?.facets[facet] ?? []).some(v => v.value === state.filters[facet]) && (
                  <option value={state.filters[facet]}>{state.filters[facet]}</option>
                )}
            </select>
          </label>
        ))}
      </div>
      {state.selected ? (
        <ViewDetail
          name={state.selected.name}
          version={state.selected.version}
          generation={generation}
          languages={props.languages}
          actions={props.actions}
          onVersion={version =>
            onState({ ...state, selected: { name: state.selected!.name, version } })
          }
          onBack={() => onState({ ...state, selected: null })}
        />
      ) : (
        <ViewList
          result={result}
          error={error}
          loading={loading}
          filtered={Boolean(state.query.trim()) || activeFilters > 0}
          onClear={() => onState({ ...state, query: '', filters: {} })}
          onSelect={view => onState({ ...state, selected: { name: view.name, version: null } })}
        />
      )}
    </div>
  );
}

interface IListProps {
  result: ISearchResult | null;
  error: string | null;
  loading: boolean;
  filtered: boolean;
  onClear: () => void;
  onSelect: (view: IViewSummary) => void;
}

function ViewList(props: IListProps): JSX.Element {
  const { result, error, loading, filtered } = props;
  if (error) {
    return (
      <div className="jp-FeaturesSidebar-state jp-mod-error" role="alert">
        <p>
          <strong>Cannot read the registry.</strong>
        </p>
        <p className="jp-FeaturesSidebar-errorMessage">{error}</p>
        <p>{HINT}</p>
      </div>
    );
  }
  if (!result) {
    return (
      <div className="jp-FeaturesSidebar-state jp-mod-loading">
        Loading feature views from the registry…
      </div>
    );
  }
  if (result.total === 0) {
    return (
      <div className="jp-FeaturesSidebar-state jp-mod-empty">
        <p>
          <strong>No feature views in the registry yet.</strong>
        </p>
        <p>
          Define one in a notebook with <code>%%feature</code> or{' '}
          <code>ws.feature_view(…)</code>, then press <em>Export to registry</em> in the
          notebook toolbar.
        </p>
      </div>
    );
  }
  return (
    <div className={`jp-FeaturesSidebar-results${loading ? ' jp-mod-loading' : ''}`}>
      <div className="jp-FeaturesSidebar-count">
        {filtered ? `${result.matched} of ${result.total}` : result.total} feature view
        {result.total === 1 ? '' : 's'}
        {filtered && (
          <button className="jp-FeaturesSidebar-link" onClick={props.onClear}>
            clear
          </button>
        )}
      </div>
      {result.views.length === 0 ? (
        <div className="jp-FeaturesSidebar-state jp-mod-nomatch">
          No feature view matches the search and filters.{' '}
          <button className="jp-FeaturesSidebar-link" onClick={props.onClear}>
            Clear them
          </button>
        </div>
      ) : (
        <ul className="jp-FeaturesSidebar-list">
          {result.views.map(view => (
            <li
              key={view.name}
              className="jp-FeaturesSidebar-item"
              data-view={view.name}
              tabIndex={0}
              onClick={() => props.onSelect(view)}
              onKeyDown={event => event.key === 'Enter' && props.onSelect(view)}
            >
              <div className="jp-FeaturesSidebar-itemHead">
                <span className="jp-FeaturesSidebar-viewName">{view.name}</span>
                <span className="jp-FeaturesSidebar-version">v{view.version}</span>
                {(view.windows ?? []).length > 0 && (
                  <span
                    className="jp-FeaturesSidebar-windows"
                    title={`windowed view: each feature aggregates the rows in the last ${(view.windows ?? []).join(' / ')} before each label's time`}
                  >
                    windows {(view.windows ?? []).join(' · ')}
                  </span>
                )}
                {view.owner && <span className="jp-FeaturesSidebar-owner">{view.owner}</span>}
                {(view.warnings ?? []).length > 0 && (
                  <span
                    className="jp-FeaturesSidebar-warnBadge"
                    title={(view.warnings ?? []).join('\n')}
                  >
                    ⚠ not online
                  </span>
                )}
              </div>
              {(view.warnings ?? []).length > 0 && (
                <div className="jp-FeaturesSidebar-itemWarning">{(view.warnings ?? [])[0]}</div>
              )}
              {view.description && (
                <div className="jp-FeaturesSidebar-description">{view.description}</div>
              )}
              <div className="jp-FeaturesSidebar-chips">
                {view.features.map(f => (
                  <span key={f.name} className="jp-FeaturesSidebar-chip" title={f.description}>
                    {f.name}
                    <span className="jp-FeaturesSidebar-type">{f.type}</span>
                  </span>
                ))}
              </div>
            </li>
          ))}
        </ul>
      )}
      {result.matched > result.views.length && (
        <div className="jp-FeaturesSidebar-count">
          Showing the first {result.views.length}: narrow the search to see the rest.
        </div>
      )}
    </div>
  );
}
