import {
  AdHocVariableFilter,
  AnnotationQuery,
  CustomVariableSupport,
  DataQueryRequest,
  DataQueryResponse,
  DataSourceGetTagValuesOptions,
  DataSourceInstanceSettings,
  MetricFindValue,
  ScopedVars,
  TimeRange,
} from '@grafana/data';
import { DataSourceWithBackend, getTemplateSrv, TemplateSrv } from '@grafana/runtime';
import { from, map, Observable } from 'rxjs';

import { VariableQueryEditor } from './components/VariableQueryEditor';
import { filterValues, interpolate, values } from './interpolate';
import {
  Compiled,
  DEFAULT_QUERY,
  DIMS,
  GpuOptions,
  GpuQuery,
  takesMetric,
  Labels,
  MetricInfo,
  VariableQuery,
} from './types';
import { parseVariableQuery } from './variableQuery';

export { parseVariableQuery };

/** DataSource is the browser side of the gpufleet datasource; queries run in the Go backend. */
export class DataSource extends DataSourceWithBackend<GpuQuery, GpuOptions> {
  private metricsCache?: Promise<MetricInfo[]>;

  constructor(
    instanceSettings: DataSourceInstanceSettings<GpuOptions>,
    private readonly templateSrv: TemplateSrv = getTemplateSrv()
  ) {
    super(instanceSettings);
    this.variables = new GpuVariableSupport(this);
    // Grafana's standard annotation support: the query editor's Events mode, frames of time,
    // text and tags from the backend's annotations query.
    this.annotations = {
      prepareAnnotation: (a: AnnotationQuery<GpuQuery>) => ({
        ...a,
        target: { refId: 'Anno', ...a.target, queryType: 'annotations' },
      }),
    };
  }

  getDefaultQuery(): Partial<GpuQuery> {
    return DEFAULT_QUERY;
  }

  /** filterQuery skips hidden queries and ones with nothing to run yet. */
  filterQuery(q: GpuQuery): boolean {
    if (q.hide) {
      return false;
    }
    if (q.queryType === 'sql') {
      return Boolean(q.rawSql?.trim());
    }
    return !takesMetric(q.queryType) || Boolean(q.metric);
  }

  applyTemplateVariables(q: GpuQuery, scopedVars: ScopedVars, filters?: AdHocVariableFilter[]): GpuQuery {
    return interpolate(q, this.templateSrv, scopedVars, filters);
  }

  /**
   * interpolateVariablesInQueries is what Explore and "new alert rule" from a panel call to take a
   * dashboard's queries with the variables filled in: the same interpolation as the panel's.
   * Defined here, not left to the DataSourceWithBackend of whichever Grafana runs the plugin.
   */
  interpolateVariablesInQueries(
    queries: GpuQuery[],
    scopedVars: ScopedVars,
    filters?: AdHocVariableFilter[]
  ): GpuQuery[] {
    return queries.map((q) => ({ ...this.applyTemplateVariables(q, scopedVars, filters), datasource: this.getRef() }));
  }

  /** getQueryDisplayText is how query history lists a query: one line, as a person would say it. */
  getQueryDisplayText(q: GpuQuery): string {
    return queryText(q);
  }

  /** getTagKeys: ad-hoc filters filter by the dimensions. */
  async getTagKeys(): Promise<MetricFindValue[]> {
    return DIMS.map((text) => ({ text }));
  }

  /** getTagValues: an ad-hoc filter's values are the dimension's, in the clusters other filters chose. */
  async getTagValues(options: DataSourceGetTagValuesOptions<GpuQuery>): Promise<MetricFindValue[]> {
    const clusters = (options.filters ?? [])
      .filter((f) => f.key === 'cluster' && (f.operator === '=' || f.operator === '=|'))
      .flatMap((f) => f.values ?? [f.value]);
    const res = await this.labels(options.key, clusters);
    return res.values.map((text) => ({ text }));
  }

  /** metrics lists every metric with its unit, help and the aggregations that apply (cached). */
  metrics(): Promise<MetricInfo[]> {
    if (!this.metricsCache) {
      this.metricsCache = this.getResource<MetricInfo[]>('metrics').catch((err) => {
        this.metricsCache = undefined;
        throw err;
      });
    }
    return this.metricsCache;
  }

  /**
   * labels lists a dimension's values seen in the last 7 days, optionally in some clusters: at
   * most 10,000, truncated saying whether there were more.
   */
  async labels(dim: string, clusters: string[] = []): Promise<Labels> {
    const params: Record<string, string | string[]> = { dim };
    if (clusters.length > 0) {
      params.cluster = clusters;
    }
    const res = await this.getResource<Labels | string[]>('labels', params);
    // A backend from before the truncated flag answers the bare list.
    return Array.isArray(res) ? { values: res, truncated: false } : res;
  }

  /** compile asks the backend for the SQL a query runs over the range, as QueryData would. */
  compile(q: GpuQuery, range: TimeRange | undefined, intervalMs?: number, maxDataPoints?: number): Promise<Compiled> {
    const body = {
      ...interpolate(q, this.templateSrv),
      from: range?.from.valueOf() ?? 0,
      to: range?.to.valueOf() ?? 0,
      intervalMs: intervalMs ?? 0,
      maxDataPoints: maxDataPoints ?? 0,
    };
    return this.postResource<Compiled>('compile', body);
  }

  /** metricFindQuery answers template-variable queries: {dim, cluster} or the text form "node?cluster=$cluster". */
  async metricFindQuery(
    query: Pick<VariableQuery, 'dim' | 'cluster'> | string,
    options?: { scopedVars?: ScopedVars }
  ): Promise<MetricFindValue[]> {
    const q = typeof query === 'string' ? parseVariableQuery(query) : query;
    if (!q.dim) {
      return [];
    }
    // A cluster variable set to All narrows nothing; several clusters narrow to any of them.
    let clusters: string[] = [];
    if (q.cluster && !isAllRef(this.templateSrv, q.cluster, options?.scopedVars)) {
      clusters = values(this.templateSrv, q.cluster, options?.scopedVars);
      if (clusters.length === 0) {
        return []; // in no cluster: a cluster variable with no options
      }
    }
    const res = await this.labels(this.templateSrv.replace(q.dim, options?.scopedVars), clusters);
    return res.values.map((text) => ({ text }));
  }
}

/** isAllRef: a whole-value reference to a variable set to All (as a filter, it keeps everything). */
function isAllRef(srv: TemplateSrv, ref: string, scopedVars?: ScopedVars): boolean {
  return filterValues(srv, { dim: 'cluster', values: [ref] }, scopedVars) === undefined;
}

/** queryText is a query in one line: "avg gpu_util by cluster where node in (a, b)". */
export function queryText(q: GpuQuery): string {
  const where = (q.filters ?? [])
    .map((f) => (f.values.length === 1 ? `${f.dim} = ${f.values[0]}` : `${f.dim} in (${f.values.join(', ')})`))
    .join(' and ');
  const tail = (s: string) => (where ? `${s} where ${where}` : s);
  switch (q.queryType) {
    case 'sql':
      return (q.rawSql ?? '').replace(/\s+/g, ' ').trim();
    case 'annotations':
      return tail(`events ${q.kinds?.length ? q.kinds.join(', ') : 'of every kind'}`);
    case 'top':
      return tail(`${q.order === 'asc' ? 'lowest' : 'top'} ${q.limit ?? 10} GPUs by ${q.agg ?? 'avg'} ${q.metric ?? ''}`);
    case 'health':
      return tail('GPUs by health state');
    case 'drain':
      return tail('GPUs to drain');
    case 'interruptions':
      return tail(`jobs ended within ${q.within ?? 300} s of a fatal event, by cause`);
    case 'jobs':
      return tail('usage by job');
    case 'power':
      return tail(`${q.agg === 'max' ? 'peak' : q.agg === 'min' ? 'lowest' : 'mean'} second of power by cluster`);
  }
  const by = q.groupBy?.length ? ` by ${q.groupBy.join(', ')}` : '';
  const what = `${q.agg ?? 'avg'} ${q.metric ?? ''}${by}`;
  return tail(q.queryType === 'stat' ? `${what} over the range` : what);
}

/** GpuVariableSupport lets template variables list a dimension's values with VariableQueryEditor. */
export class GpuVariableSupport extends CustomVariableSupport<DataSource, VariableQuery> {
  editor = VariableQueryEditor;

  constructor(private readonly ds: DataSource) {
    super();
  }

  query(request: DataQueryRequest<VariableQuery>): Observable<DataQueryResponse> {
    return from(this.ds.metricFindQuery(request.targets[0], { scopedVars: request.scopedVars })).pipe(
      map((data) => ({ data }))
    );
  }
}
