import { useCallback, useEffect, useMemo, useState } from 'react';
import { css } from '@emotion/css';
import { GrafanaTheme2, QueryEditorProps, SelectableValue } from '@grafana/data';
import {
  CodeEditor,
  Combobox,
  ComboboxOption,
  InlineField,
  InlineSwitch,
  Input,
  MultiCombobox,
  RadioButtonGroup,
  Stack,
  useStyles2,
} from '@grafana/ui';

import { DataSource } from '../datasource';
import {
  Compiled,
  DIMS,
  EVENT_DIMS,
  EVENT_KINDS,
  Filter,
  GPU_DIMS,
  GpuOptions,
  GpuQuery,
  isFailureType,
  MetricInfo,
  POWER_AGGS,
  QueryType,
  TOP_AGGS,
} from '../types';
import { FiltersEditor } from './FiltersEditor';

type Props = QueryEditorProps<DataSource, GpuQuery, GpuOptions>;

const MODES: Array<SelectableValue<QueryType>> = [
  { label: 'Time series', value: 'series', description: 'one series per group over time' },
  { label: 'Stat', value: 'stat', description: 'one number per group over the range: stat panels and alerts' },
  { label: 'Top GPUs', value: 'top', description: 'the GPUs ranked by a metric' },
  { label: 'SQL', value: 'sql', description: 'raw read-only SQL with macros' },
  { label: 'Health', value: 'health', description: 'GPUs by health state: in all, by cluster, by model' },
  { label: 'Drain list', value: 'drain', description: 'the GPUs to act on now, most severe first' },
  { label: 'Interruptions', value: 'interruptions', description: 'jobs ended after a fatal event, by cause' },
  { label: 'Jobs', value: 'jobs', description: 'what each job used over the range: GPUs, GPU-hours, utilisation, energy' },
  { label: 'Power', value: 'power', description: "each cluster's total power draw per second: the mean, peak or lowest second per point" },
];

const MACROS =
  'Macros: $__timeFilter(col), $__timeInterval(col), $__interval_s, $__fromTime, $__toTime, ' +
  '$__conditionalAll(condition, $var). Template variables are quoted as SQL strings; statements run read-only.';

/**
 * aggsFor is the aggregations a metric takes in this mode. A metric the catalogue does not know (a
 * $variable, or the catalogue not loaded yet) gets every aggregation any metric takes.
 */
function aggsFor(m: MetricInfo | undefined, mode: QueryType, all: MetricInfo[]): string[] {
  if (mode === 'top') {
    return m?.kind === 'counter' ? [] : TOP_AGGS;
  }
  if (mode === 'power') {
    return POWER_AGGS;
  }
  if (m) {
    return m.aggs;
  }
  return [...new Set(all.flatMap((x) => x.aggs))];
}

const getStyles = (theme: GrafanaTheme2) => ({
  sql: css({
    fontFamily: theme.typography.fontFamilyMonospace,
    fontSize: theme.typography.bodySmall.fontSize,
    whiteSpace: 'pre-wrap',
    margin: 0,
    padding: theme.spacing(1),
    background: theme.colors.background.secondary,
  }),
  error: css({ color: theme.colors.error.text, fontSize: theme.typography.bodySmall.fontSize }),
  help: css({ color: theme.colors.text.secondary, fontSize: theme.typography.bodySmall.fontSize }),
});

/** QueryEditor builds GPU-fleet queries (metric, aggregation, group by, filters, top-K) or takes raw SQL. */
export function QueryEditor({ query, onChange, onRunQuery, datasource, range, data }: Props) {
  const styles = useStyles2(getStyles);
  const mode: QueryType = query.queryType ?? 'series';
  const [metrics, setMetrics] = useState<MetricInfo[]>([]);
  const [metricsError, setMetricsError] = useState<string>();
  // The compiled SQL (or the backend's refusal) and the query it was compiled for: shown only while
  // that is still the query being edited.
  const [compiled, setCompiled] = useState<{ key: string; sql?: Compiled; error?: string }>();

  useEffect(() => {
    datasource
      .metrics()
      .then(setMetrics)
      .catch((e) => setMetricsError(errorText(e)));
  }, [datasource]);

  const metric = metrics.find((m) => m.column === query.metric);
  const aggs = aggsFor(metric, mode, metrics);

  const change = useCallback(
    (patch: Partial<GpuQuery>, run = true) => {
      onChange({ ...query, ...patch });
      if (run) {
        onRunQuery();
      }
    },
    [query, onChange, onRunQuery]
  );

  // The SQL the builder query runs, asked of the backend a moment after the last change.
  const intervalMs = data?.request?.intervalMs;
  const maxDataPoints = data?.request?.maxDataPoints;
  const compiles =
    mode === 'annotations' || mode === 'jobs' || mode === 'power' || isFailureType(mode) || (mode !== 'sql' && Boolean(query.metric));
  const compileKey = compiles ? JSON.stringify([query, range?.from.valueOf(), range?.to.valueOf()]) : '';
  useEffect(() => {
    if (!compileKey) {
      return;
    }
    let live = true;
    const t = setTimeout(() => {
      datasource
        .compile(query, range, intervalMs, maxDataPoints)
        .then((sql) => live && setCompiled({ key: compileKey, sql }))
        .catch((e) => live && setCompiled({ key: compileKey, error: errorText(e) }));
    }, 300);
    return () => {
      live = false;
      clearTimeout(t);
    };
    // compileKey stands for query and range.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [datasource, compileKey, intervalMs, maxDataPoints]);
  const shown = compiled && compiled.key === compileKey ? compiled : undefined;

  // Top-K ranks gauges only (the minute rollup's avg, max and min).
  const metricOptions = useMemo(
    () =>
      metrics
        .filter((m) => mode !== 'top' || m.kind === 'gauge')
        .map((m) => ({
          label: m.column,
          value: m.column,
          description: `${m.help}${m.unit ? ` (${m.unit})` : ''}${m.kind === 'counter' ? ', counter' : ''}`,
        })),
    [metrics, mode]
  );

  const onMetric = (v: ComboboxOption<string>) => {
    const next = metrics.find((m) => m.column === v.value);
    const allowed = aggsFor(next, mode, metrics);
    const agg = query.agg && allowed.includes(query.agg) ? query.agg : allowed[0];
    change({ metric: v.value, agg });
  };

  const onMode = (m: QueryType) => {
    const allowed = aggsFor(metric, m, metrics);
    const agg = query.agg && allowed.includes(query.agg) ? query.agg : allowed[0];
    change({ queryType: m, agg }, m !== 'sql' || Boolean(query.rawSql));
  };

  const filtersEditor = (dims: string[]) => (
    <FiltersEditor
      filters={query.filters ?? []}
      dims={dims}
      labels={(dim) => datasource.labels(dim)}
      onChange={(filters: Filter[]) =>
        change(
          { filters },
          filters.every((f) => f.values.length > 0)
        )
      }
    />
  );
  const legendField = (
    <InlineField
      label="Legend"
      labelWidth={14}
      tooltip="each series' name: {{label}} stands for its label, such as {{cluster}} or {{node}}; {{metric}} for the metric"
    >
      <Input
        id="gpufleet-alias"
        width={40}
        placeholder="from the labels"
        value={query.alias ?? ''}
        onChange={(e) => change({ alias: e.currentTarget.value || undefined }, false)}
        onBlur={() => onRunQuery()}
      />
    </InlineField>
  );
  const compiledSQL = (
    <>
      {shown?.error && (
        <div className={styles.error} role="alert">
          {shown.error}
        </div>
      )}
      {shown?.sql && (
        <pre className={styles.sql} aria-label="generated SQL">
          {shown.sql.sql}
          {shown.sql.table ? `\n-- reads ${shown.sql.table}` : ''}
        </pre>
      )}
    </>
  );

  if (mode === 'annotations') {
    // An annotation query (prepareAnnotation sets the type): GPU events as marks on time series.
    return (
      <Stack direction="column" gap={1}>
        <InlineField label="Events" labelWidth={14} tooltip="the kinds of GPU event shown; none: every kind">
          <MultiCombobox
            id="gpufleet-event-kinds"
            width="auto"
            minWidth={30}
            options={EVENT_KINDS.map((k) => ({ label: k, value: k }))}
            value={query.kinds ?? []}
            placeholder="every kind"
            onChange={(vs) => change({ kinds: vs.map((v) => v.value).filter(Boolean) })}
          />
        </InlineField>
        {filtersEditor(EVENT_DIMS)}
        {compiledSQL}
      </Stack>
    );
  }

  const durationField = (id: string, label: string, key: 'lookback' | 'silent', placeholder: string, tooltip: string) => (
    <InlineField label={label} labelWidth={14} tooltip={tooltip}>
      <Input
        id={id}
        width={12}
        placeholder={placeholder}
        value={query[key] ?? ''}
        onChange={(e) => change({ [key]: e.currentTarget.value || undefined }, false)}
        onBlur={() => onRunQuery()}
      />
    </InlineField>
  );
  const numberField = (id: string, label: string, key: 'limit' | 'within', def: number, maxValue: number, tooltip: string) => (
    <InlineField label={label} labelWidth={14} tooltip={tooltip}>
      <Input
        id={id}
        type="number"
        width={12}
        min={1}
        max={maxValue}
        value={query[key] ?? def}
        onChange={(e) => change({ [key]: Number(e.currentTarget.value) || undefined }, false)}
        onBlur={() => onRunQuery()}
      />
    </InlineField>
  );
  const failureEditor = (
    <>
      <Stack gap={1} wrap="wrap">
        {mode !== 'interruptions' &&
          durationField('gpufleet-lookback', 'Look-back', 'lookback', '168h', 'a GPU with a sample this far back is part of the fleet; one silent longer has left it')}
        {durationField(
          'gpufleet-silent',
          mode === 'interruptions' ? 'Ended after' : 'Silent after',
          'silent',
          '2m',
          mode === 'interruptions'
            ? 'a job whose newest sample is older has ended'
            : 'a GPU whose newest sample is older has stopped reporting'
        )}
        {mode === 'drain' && numberField('gpufleet-limit', 'GPUs', 'limit', 1000, 10000, 'list at most this many, most severe first')}
        {mode === 'interruptions' &&
          numberField('gpufleet-within', 'Within (s)', 'within', 300, 86400, 'a job ended at most this many seconds after a fatal event on its GPUs')}
      </Stack>
      {filtersEditor(GPU_DIMS)}
      {compiledSQL}
    </>
  );

  return (
    <Stack direction="column" gap={1}>
      <RadioButtonGroup<QueryType> options={MODES} value={mode} onChange={onMode} size="sm" />
      {isFailureType(mode) ? (
        failureEditor
      ) : mode === 'jobs' ? (
        <>
          {filtersEditor(GPU_DIMS)}
          {compiledSQL}
        </>
      ) : mode === 'power' ? (
        <>
          <InlineField
            label="Per point"
            labelWidth={14}
            tooltip="a point wider than a second shows the mean, the peak (max) or the lowest (min) of its seconds' totals"
          >
            <RadioButtonGroup<string>
              options={POWER_AGGS.map((a) => ({ label: a === 'max' ? 'peak' : a === 'min' ? 'lowest' : 'mean', value: a }))}
              value={query.agg && POWER_AGGS.includes(query.agg) ? query.agg : 'avg'}
              onChange={(agg) => change({ agg })}
              size="sm"
            />
          </InlineField>
          {filtersEditor(DIMS)}
          <div className={styles.help}>
            Filters on the cluster alone read the per-second rollup; a filter on any other label reads the raw rows.
          </div>
          {legendField}
          {compiledSQL}
        </>
      ) : mode === 'sql' ? (
        <>
          <CodeEditor
            language="sql"
            value={query.rawSql ?? ''}
            height={180}
            showLineNumbers
            showMiniMap={false}
            onBlur={(rawSql) => change({ rawSql })}
            onSave={(rawSql) => change({ rawSql })}
          />
          <div className={styles.help}>{MACROS}</div>
        </>
      ) : (
        <>
          <Stack gap={1} wrap="wrap">
            <InlineField label="Metric" labelWidth={14} invalid={Boolean(metricsError)} error={metricsError}>
              <Combobox
                id="gpufleet-metric"
                width={30}
                options={metricOptions}
                value={query.metric ?? null}
                loading={metrics.length === 0 && !metricsError}
                createCustomValue
                onChange={onMetric}
              />
            </InlineField>
            <InlineField label={mode === 'top' ? 'Rank by' : 'Aggregation'} labelWidth={14}>
              <Combobox
                id="gpufleet-agg"
                width={16}
                options={aggs.map((a) => ({ label: a, value: a }))}
                value={query.agg ?? null}
                createCustomValue
                onChange={(v) => change({ agg: v.value })}
              />
            </InlineField>
            {metric && <span className={styles.help}>{metric.unit}</span>}
          </Stack>
          {mode !== 'top' && (
            <InlineField label="Group by" labelWidth={14}>
              <MultiCombobox
                id="gpufleet-group-by"
                width="auto"
                minWidth={30}
                maxWidth={80}
                options={DIMS.map((d) => ({ label: d, value: d }))}
                value={query.groupBy ?? []}
                createCustomValue
                placeholder="the whole fleet"
                onChange={(vs) => change({ groupBy: vs.map((v) => v.value).filter(Boolean) })}
              />
            </InlineField>
          )}
          {filtersEditor(DIMS)}
          {mode !== 'top' && legendField}
          {mode === 'series' && (
            <InlineField
              label="Fill gaps"
              labelWidth={14}
              tooltip="every step of every series, empty where nothing was read"
            >
              <InlineSwitch value={Boolean(query.fill)} onChange={(e) => change({ fill: e.currentTarget.checked })} />
            </InlineField>
          )}
          {mode === 'top' && (
            <Stack gap={1}>
              <InlineField label="Order" labelWidth={14}>
                <RadioButtonGroup<'desc' | 'asc'>
                  options={[
                    { label: 'Highest', value: 'desc' },
                    { label: 'Lowest', value: 'asc' },
                  ]}
                  value={query.order ?? 'desc'}
                  onChange={(order) => change({ order })}
                />
              </InlineField>
              <InlineField label="GPUs" labelWidth={8}>
                <Input
                  id="gpufleet-limit"
                  type="number"
                  width={10}
                  min={1}
                  max={10000}
                  value={query.limit ?? 10}
                  onChange={(e) => change({ limit: Number(e.currentTarget.value) || undefined }, false)}
                  onBlur={() => onRunQuery()}
                />
              </InlineField>
            </Stack>
          )}
          {compiledSQL}
        </>
      )}
    </Stack>
  );
}

/** errorText pulls the backend's message out of a failed resource call. */
function errorText(e: unknown): string {
  if (e && typeof e === 'object') {
    const o = e as { data?: { error?: string; message?: string }; message?: string };
    return o.data?.error ?? o.data?.message ?? o.message ?? String(e);
  }
  return String(e);
}
