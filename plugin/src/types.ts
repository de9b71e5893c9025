import { DataSourceJsonData } from '@grafana/data';
import { DataQuery } from '@grafana/schema';

/**
 * What a panel query asks: a time series per group, one number per group, the top GPUs, raw SQL,
 * (as an annotation query) the GPU events of the range, or a failure report: GPUs by health state,
 * the drain list, the jobs interrupted by a fatal event (FAILURE_TYPES, docs/failures.md), what
 * each job used over the range (jobs), or each cluster's total power draw per second (power,
 * docs/power.md).
 */
export type QueryType = 'series' | 'stat' | 'top' | 'sql' | 'annotations' | 'jobs' | 'power' | FailureType;

/** The aggregations of the seconds' totals in a power point (query.PowerQuery.Agg). */
export const POWER_AGGS = ['avg', 'max', 'min'];

/** takesMetric: the query types that read a metric of the catalogue (the rest name what they read). */
export function takesMetric(t: QueryType | undefined): boolean {
  return t === undefined || t === 'series' || t === 'stat' || t === 'top';
}

/** The failure reports: they take no metric. */
export type FailureType = 'health' | 'drain' | 'interruptions';

export const FAILURE_TYPES: FailureType[] = ['health', 'drain', 'interruptions'];

/** isFailureType: a failure report's query type. */
export function isFailureType(t: QueryType | undefined): t is FailureType {
  return FAILURE_TYPES.some((f) => f === t);
}

/** Keeps rows whose dimension is one of the values. */
export interface Filter {
  dim: string;
  values: string[];
}

/** One panel query, as the backend (plugin/pkg/plugin.Query) reads it. */
export interface GpuQuery extends DataQuery {
  queryType?: QueryType;
  metric?: string;
  agg?: string;
  groupBy?: string[];
  filters?: Filter[];
  fill?: boolean;
  order?: 'asc' | 'desc';
  limit?: number;
  rawSql?: string;
  /**
   * The series' display name (legend), {{label}} replaced by each series' label, {{metric}} by
   * the metric; applied by the backend.
   */
  alias?: string;
  /** annotations: the event kinds shown (EVENT_KINDS); none means all. */
  kinds?: string[];
  /** health, drain: how far back a GPU counts as part of the fleet, a Go duration ("168h"). */
  lookback?: string;
  /** health, drain: silent this long, a GPU stopped reporting; interruptions: a job ended ("2m"). */
  silent?: string;
  /** interruptions: a job ended at most this many seconds after a fatal event on its GPUs. */
  within?: number;
}

export const DEFAULT_QUERY: Partial<GpuQuery> = {
  queryType: 'series',
  metric: 'gpu_util',
  agg: 'avg',
  groupBy: [],
  filters: [],
};

/** The datasource's jsonData (plugin/pkg/plugin.Settings). */
export interface GpuOptions extends DataSourceJsonData {
  address?: string;
  database?: string;
  username?: string;
  chdbPath?: string;
  secure?: boolean;
  tlsSkipVerify?: boolean;
  tlsAuth?: boolean;
  tlsAuthWithCACert?: boolean;
}

/** The datasource's secureJsonData: never sent back to the browser once saved. */
export interface GpuSecureOptions {
  password?: string;
  tlsCACert?: string;
  tlsClientCert?: string;
  tlsClientKey?: string;
}

/** One metric as the backend's metrics resource describes it. */
export interface MetricInfo {
  column: string;
  kind: 'gauge' | 'counter';
  unit: string;
  help: string;
  aggs: string[];
}

/** The SQL a query will run, from the backend's compile resource. */
export interface Compiled {
  sql: string;
  params?: Record<string, string>;
  table?: string;
}

/** A template variable's query: the distinct values of a dimension, optionally in one cluster. */
export interface VariableQuery extends DataQuery {
  dim: string;
  cluster?: string;
}

/** Dimensions a query groups and filters by (query.DimByName on the backend). */
export const DIMS = ['cluster', 'pool', 'rack', 'node', 'gpu', 'model', 'job'];

/** Dimensions the failure reports filter GPUs by: a GPU's labels, not the job on it. */
export const GPU_DIMS = ['cluster', 'pool', 'rack', 'node', 'gpu', 'model'];

/** Dimensions GPU events carry (gpu_events): filters of an annotation query take these. */
export const EVENT_DIMS = ['cluster', 'pool', 'rack', 'node', 'gpu'];

/** Kinds of GPU event (gpu_events.kind). */
export const EVENT_KINDS = ['xid', 'ecc_sbe', 'ecc_dbe', 'throttle', 'fell_off_bus'];

/** The labels resource's answer: at most 10,000 values, and whether there were more. */
export interface Labels {
  values: string[];
  truncated: boolean;
}

/** Aggregations a top-K ranking takes (percentiles from the per-GPU minute digests). */
export const TOP_AGGS = ['avg', 'max', 'min', 'p50', 'p90', 'p95', 'p99'];
