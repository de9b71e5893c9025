import {
  CustomVariableSupport,
  DataQueryRequest,
  DataQueryResponse,
  DataSourceInstanceSettings,
  MetricFindValue,
  ScopedVars,
  TimeRange,
} from '@grafana/data';
import { DataSourceWithBackend, getTemplateSrv, TemplateSrv } from '@grafana/runtime';
import { from, map, Observable } from 'rxjs';

import { VariableQueryEditor } from './components/VariableQueryEditor';
import { interpolate } from './interpolate';
import { Compiled, DEFAULT_QUERY, GpuOptions, GpuQuery, MetricInfo, VariableQuery } from './types';
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
  }

  getDefaultQuery(): Partial<GpuQuery> {
    return DEFAULT_QUERY;
  }

  /** filterQuery skips hidden queries and ones with nothing to run yet. */
  filterQuery(q: GpuQuery): boolean {
    if (q.hide) {
      return false;
    }
    return q.queryType === 'sql' ? Boolean(q.rawSql?.trim()) : Boolean(q.metric);
  }

  applyTemplateVariables(q: GpuQuery, scopedVars: ScopedVars): GpuQuery {
    return interpolate(q, this.templateSrv, scopedVars);
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

  /** labels lists a dimension's values seen in the last 7 days, optionally in one cluster. */
  labels(dim: string, cluster?: string): Promise<string[]> {
    const params: Record<string, string> = { dim };
    if (cluster) {
      params.cluster = cluster;
    }
    return this.getResource<string[]>('labels', params);
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
    const cluster = q.cluster ? this.templateSrv.replace(q.cluster, options?.scopedVars) : undefined;
    const vals = await this.labels(this.templateSrv.replace(q.dim, options?.scopedVars), cluster);
    return vals.map((text) => ({ text }));
  }
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
