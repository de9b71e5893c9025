import { act, fireEvent, render, screen } from '@testing-library/react';

import { DataSource } from '../datasource';
import { user } from '../testing';
import { GpuQuery, MetricInfo } from '../types';
import { QueryEditor } from './QueryEditor';

// Monaco does not run in jsdom; the SQL editor stands in as a textarea with the same callbacks.
jest.mock('@grafana/ui', () => ({
  ...jest.requireActual('@grafana/ui'),
  CodeEditor: ({ value, onBlur }: { value: string; onBlur: (v: string) => void }) => (
    <textarea aria-label="SQL editor" defaultValue={value} onBlur={(e) => onBlur(e.currentTarget.value)} />
  ),
}));

const metrics: MetricInfo[] = [
  { column: 'gpu_util', kind: 'gauge', unit: '%', help: 'GPU utilisation', aggs: ['avg', 'max', 'p99'] },
  { column: 'energy_mj', kind: 'counter', unit: 'mJ', help: 'energy since driver load', aggs: ['increase', 'rate'] },
];

function fakeDS() {
  return {
    metrics: jest.fn().mockResolvedValue(metrics),
    labels: jest.fn().mockResolvedValue({ values: ['east', 'west'], truncated: false }),
    compile: jest.fn().mockResolvedValue({ sql: 'SELECT t, value FROM gpufleet.fleet_1m', table: 'fleet_1m' }),
  };
}

/**
 * setup renders the editor and lets the metric catalogue's promise settle, so that what follows
 * sees the loaded editor without polling for it.
 */
async function setup(query: GpuQuery, ds = fakeDS()) {
  const onChange = jest.fn();
  const onRunQuery = jest.fn();
  const utils = render(
    <QueryEditor query={query} onChange={onChange} onRunQuery={onRunQuery} datasource={ds as unknown as DataSource} />
  );
  await act(async () => {});
  return { ...utils, onChange, onRunQuery, ds, user: user() };
}

/** option is an open menu's option by its text: a text match, cheaper than a role query's accessible names. */
function option(text: string | RegExp): HTMLElement {
  return screen.getByText(text, { selector: '[role="option"] *, [role="option"]' });
}

async function pick(u: ReturnType<typeof user>, inputId: string, text: string) {
  await u.click(document.getElementById(inputId)!);
  await u.click(option(text));
}

describe('QueryEditor', () => {
  afterEach(() => {
    jest.useRealTimers();
  });

  it('picks a metric from the catalogue and an aggregation that applies to it', async () => {
    const { onChange, onRunQuery, user } = await setup({
      refId: 'A',
      queryType: 'series',
      metric: 'gpu_util',
      agg: 'p99',
    });
    expect(screen.getByDisplayValue('gpu_util')).toBeInTheDocument();
    await pick(user, 'gpufleet-metric', 'energy_mj');
    // A counter takes increase or rate: p99 gives way to the first that applies.
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ metric: 'energy_mj', agg: 'increase' }));
    expect(onRunQuery).toHaveBeenCalled();
  });

  it('offers only the aggregations of the chosen metric', async () => {
    const { user } = await setup({ refId: 'A', queryType: 'series', metric: 'energy_mj', agg: 'increase' });
    await user.click(document.getElementById('gpufleet-agg')!);
    expect(option('rate')).toBeInTheDocument();
    expect(screen.queryByText('p99')).not.toBeInTheDocument();
  });

  it('offers every aggregation for a metric the catalogue does not know, such as a variable', async () => {
    const { user } = await setup({ refId: 'A', queryType: 'series', metric: '$metric', agg: 'avg' });
    expect(screen.getByDisplayValue('$metric')).toBeInTheDocument();
    await user.click(document.getElementById('gpufleet-agg')!);
    expect(option('p99')).toBeInTheDocument();
    expect(option('rate')).toBeInTheDocument();
  });

  it('ranks only gauges in top mode', async () => {
    const { user } = await setup({ refId: 'A', queryType: 'top', metric: 'gpu_util', agg: 'avg' });
    await user.click(document.getElementById('gpufleet-metric')!);
    await user.clear(document.getElementById('gpufleet-metric')!);
    expect(option('gpu_util')).toBeInTheDocument();
    expect(screen.queryByText('energy_mj')).not.toBeInTheDocument();
  });

  it('groups by dimensions', async () => {
    const { onChange, user } = await setup({
      refId: 'A',
      queryType: 'series',
      metric: 'gpu_util',
      agg: 'avg',
      groupBy: ['cluster'],
    });
    await pick(user, 'gpufleet-group-by', 'pool');
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ groupBy: ['cluster', 'pool'] }));
  });

  it('adds a filter', async () => {
    const { onChange, user } = await setup({ refId: 'A', metric: 'gpu_util', agg: 'avg' });
    await user.click(screen.getByLabelText('add filter'));
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ filters: [{ dim: 'cluster', values: [] }] }));
  });

  it('offers a filter dimension’s known values', async () => {
    const { onChange, ds, user } = await setup({
      refId: 'A',
      metric: 'gpu_util',
      agg: 'avg',
      filters: [{ dim: 'cluster', values: [] }],
    });
    expect(ds.labels).toHaveBeenCalledWith('cluster');
    await pick(user, 'gpufleet-filter-values-0', 'west');
    expect(onChange).toHaveBeenLastCalledWith(
      expect.objectContaining({ filters: [{ dim: 'cluster', values: ['west'] }] })
    );
  });

  it('says when a dimension has more values than the picker lists', async () => {
    const ds = fakeDS();
    ds.labels.mockResolvedValue({ values: ['GPU-1', 'GPU-2'], truncated: true });
    await setup({ refId: 'A', metric: 'gpu_util', agg: 'avg', filters: [{ dim: 'gpu', values: [] }] }, ds);
    expect(screen.getByRole('note')).toHaveTextContent('the first 2 gpu values; type one not listed');
  });

  it('names series by a legend template, run when the field is left', async () => {
    const { onChange, onRunQuery } = await setup({ refId: 'A', metric: 'gpu_util', agg: 'avg' });
    const legend = document.getElementById('gpufleet-alias')!;
    fireEvent.change(legend, { target: { value: '{{cluster}}' } });
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ alias: '{{cluster}}' }));
    expect(onRunQuery).not.toHaveBeenCalled();
    fireEvent.blur(legend);
    expect(onRunQuery).toHaveBeenCalled();
  });

  it('edits an annotation query: the event kinds', async () => {
    const { onChange, user } = await setup({ refId: 'Anno', queryType: 'annotations' });
    // No panel modes, metric or legend here.
    expect(document.getElementById('gpufleet-alias')).toBeNull();
    expect(screen.queryByLabelText('SQL')).not.toBeInTheDocument();
    expect(document.getElementById('gpufleet-metric')).toBeNull();
    await pick(user, 'gpufleet-event-kinds', 'fell_off_bus');
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ kinds: ['fell_off_bus'] }));
  });

  it('filters an annotation query by the dimensions events carry only', async () => {
    const { user } = await setup({ refId: 'Anno', queryType: 'annotations', filters: [{ dim: 'cluster', values: [] }] });
    await user.click(document.getElementById('gpufleet-filter-dim-0')!);
    expect(option('node')).toBeInTheDocument();
    expect(screen.queryByText('model')).not.toBeInTheDocument();
    expect(screen.queryByText('job')).not.toBeInTheDocument();
  });

  it('takes a template variable as a filter value', async () => {
    const { onChange, user } = await setup({
      refId: 'A',
      metric: 'gpu_util',
      agg: 'avg',
      filters: [{ dim: 'node', values: ['node-1'] }],
    });
    const input = document.getElementById('gpufleet-filter-values-0')!;
    await user.click(input);
    // What the value is typed as does not matter here: the input takes it in one change.
    fireEvent.change(input, { target: { value: '$nodes' } });
    // What was typed is offered first, as a custom value.
    await user.click(option(/\$nodes/));
    expect(onChange).toHaveBeenLastCalledWith(
      expect.objectContaining({ filters: [{ dim: 'node', values: ['node-1', '$nodes'] }] })
    );
  });

  it('shows the SQL the backend compiled, and its error when it refuses', async () => {
    jest.useFakeTimers();
    const ds = fakeDS();
    const { rerender } = await setup({ refId: 'A', metric: 'gpu_util', agg: 'avg' }, ds);
    // Asked a moment after the last change, not at each keystroke.
    expect(ds.compile).not.toHaveBeenCalled();
    await act(async () => {
      jest.advanceTimersByTime(300);
    });
    expect(ds.compile).toHaveBeenCalledTimes(1);
    expect(screen.getByLabelText('generated SQL')).toHaveTextContent(
      'SELECT t, value FROM gpufleet.fleet_1m -- reads fleet_1m'
    );
    ds.compile.mockRejectedValueOnce({ data: { error: 'invalid query: metric: "nope" is not a gpu_samples metric' } });
    rerender(
      <QueryEditor
        query={{ refId: 'A', metric: 'nope' }}
        onChange={jest.fn()}
        onRunQuery={jest.fn()}
        datasource={ds as unknown as DataSource}
      />
    );
    // The SQL of the previous query is not shown for this one.
    expect(screen.queryByLabelText('generated SQL')).not.toBeInTheDocument();
    await act(async () => {
      jest.advanceTimersByTime(300);
    });
    expect(screen.getByRole('alert')).toHaveTextContent('"nope" is not a gpu_samples metric');
  });

  it('ranks GPUs in top mode with an order and a count', async () => {
    const { onChange, onRunQuery, user } = await setup({ refId: 'A', queryType: 'top', metric: 'gpu_util', agg: 'avg' });
    expect(screen.queryByText('Group by')).not.toBeInTheDocument();
    await user.click(screen.getByText('Lowest'));
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ order: 'asc' }));
    fireEvent.change(document.getElementById('gpufleet-limit')!, { target: { value: '25' } });
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ limit: 25 }));
    fireEvent.blur(document.getElementById('gpufleet-limit')!);
    expect(onRunQuery).toHaveBeenCalled();
  });

  it('edits a drain query: look-back, silence threshold and how many GPUs, run when a field is left', async () => {
    const { onChange, onRunQuery } = await setup({ refId: 'A', queryType: 'drain' });
    expect(screen.queryByText('Metric')).not.toBeInTheDocument();
    fireEvent.change(document.getElementById('gpufleet-lookback')!, { target: { value: '720h' } });
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ queryType: 'drain', lookback: '720h' }));
    fireEvent.change(document.getElementById('gpufleet-silent')!, { target: { value: '5m' } });
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ silent: '5m' }));
    fireEvent.change(document.getElementById('gpufleet-limit')!, { target: { value: '200' } });
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ limit: 200 }));
    expect(onRunQuery).not.toHaveBeenCalled();
    fireEvent.blur(document.getElementById('gpufleet-limit')!);
    expect(onRunQuery).toHaveBeenCalled();
  });

  it('edits an interruptions query: within seconds and when a job has ended, no look-back', async () => {
    const { onChange } = await setup({ refId: 'A', queryType: 'interruptions' });
    expect(document.getElementById('gpufleet-lookback')).toBeNull();
    expect(screen.getByText('Ended after')).toBeInTheDocument();
    fireEvent.change(document.getElementById('gpufleet-within')!, { target: { value: '60' } });
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ queryType: 'interruptions', within: 60 }));
  });

  it('compiles a failure report without a metric', async () => {
    jest.useFakeTimers();
    const ds = fakeDS();
    await setup({ refId: 'A', queryType: 'health' }, ds);
    await act(async () => {
      jest.advanceTimersByTime(300);
    });
    expect(ds.compile).toHaveBeenCalledWith(expect.objectContaining({ queryType: 'health' }), undefined, undefined, undefined);
  });

  it('switches to the jobs table, which takes filters and no metric, and compiles it', async () => {
    jest.useFakeTimers();
    const ds = fakeDS();
    await setup({ refId: 'A', queryType: 'jobs' }, ds);
    expect(screen.queryByText('Aggregation')).toBeNull();
    expect(document.getElementById('gpufleet-lookback')).toBeNull();
    await act(async () => {
      jest.advanceTimersByTime(300);
    });
    expect(ds.compile).toHaveBeenCalledWith(expect.objectContaining({ queryType: 'jobs' }), undefined, undefined, undefined);
  });

  it('edits a power query: the point\'s aggregation of seconds, filters, legend, and compiles it without a metric', async () => {
    jest.useFakeTimers();
    const ds = fakeDS();
    const { onChange } = await setup({ refId: 'A', queryType: 'power' }, ds);
    expect(screen.queryByText('Aggregation')).toBeNull();
    expect(document.getElementById('gpufleet-metric')).toBeNull();
    expect(document.getElementById('gpufleet-alias')).not.toBeNull();
    await act(async () => {
      jest.advanceTimersByTime(300);
    });
    expect(ds.compile).toHaveBeenCalledWith(expect.objectContaining({ queryType: 'power' }), undefined, undefined, undefined);
    await act(async () => {
      screen.getByLabelText('peak').click();
    });
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ queryType: 'power', agg: 'max' }));
  });

  it('switches to a failure report', async () => {
    const { onChange, onRunQuery, user } = await setup({ refId: 'A', metric: 'gpu_util', agg: 'avg' });
    await user.click(screen.getByLabelText('Drain list'));
    expect(onChange.mock.lastCall[0]).toEqual(expect.objectContaining({ queryType: 'drain' }));
    expect(onRunQuery).toHaveBeenCalled();
  });

  it('switches to raw SQL', async () => {
    const { onChange, user } = await setup({ refId: 'A', metric: 'gpu_util', agg: 'avg' });
    await user.click(screen.getByLabelText('SQL'));
    expect(onChange.mock.lastCall[0]).toEqual(expect.objectContaining({ queryType: 'sql' }));
  });

  it('runs the raw SQL that was typed', async () => {
    const { onChange, onRunQuery } = await setup({ refId: 'A', queryType: 'sql', rawSql: '' });
    expect(screen.getByText(/\$__timeFilter\(col\)/)).toBeInTheDocument();
    const editor = screen.getByLabelText('SQL editor');
    fireEvent.blur(editor, { target: { value: 'SELECT count() FROM gpufleet.gpu_samples WHERE $__timeFilter(time)' } });
    expect(onChange).toHaveBeenLastCalledWith(
      expect.objectContaining({ rawSql: 'SELECT count() FROM gpufleet.gpu_samples WHERE $__timeFilter(time)' })
    );
    expect(onRunQuery).toHaveBeenCalled();
  });
});
