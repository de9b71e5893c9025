import { fireEvent, render, screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';

import { DataSource } from '../datasource';
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
    labels: jest.fn().mockResolvedValue(['east', 'west']),
    compile: jest.fn().mockResolvedValue({ sql: 'SELECT t, value FROM gpufleet.fleet_1m', table: 'fleet_1m' }),
  };
}

function setup(query: GpuQuery, ds = fakeDS()) {
  const onChange = jest.fn();
  const onRunQuery = jest.fn();
  const utils = render(
    <QueryEditor query={query} onChange={onChange} onRunQuery={onRunQuery} datasource={ds as unknown as DataSource} />
  );
  return { ...utils, onChange, onRunQuery, ds };
}

async function pick(inputId: string, option: string) {
  await userEvent.click(document.getElementById(inputId)!);
  await userEvent.click(await screen.findByText(option, { selector: '[role="option"] *, [role="option"]' }));
}

describe('QueryEditor', () => {
  it('picks a metric from the catalogue and an aggregation that applies to it', async () => {
    const { onChange, onRunQuery } = setup({ refId: 'A', queryType: 'series', metric: 'gpu_util', agg: 'p99' });
    await waitFor(() => expect(screen.getByDisplayValue('gpu_util')).toBeInTheDocument());
    await pick('gpufleet-metric', 'energy_mj');
    // A counter takes increase or rate: p99 gives way to the first that applies.
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ metric: 'energy_mj', agg: 'increase' }));
    expect(onRunQuery).toHaveBeenCalled();
  });

  it('offers only the aggregations of the chosen metric', async () => {
    setup({ refId: 'A', queryType: 'series', metric: 'energy_mj', agg: 'increase' });
    await waitFor(() => expect(screen.getByDisplayValue('energy_mj')).toBeInTheDocument());
    await userEvent.click(document.getElementById('gpufleet-agg')!);
    expect(await screen.findByText('rate')).toBeInTheDocument();
    expect(screen.queryByText('p99')).not.toBeInTheDocument();
  });

  it('offers every aggregation for a metric the catalogue does not know, such as a variable', async () => {
    setup({ refId: 'A', queryType: 'series', metric: '$metric', agg: 'avg' });
    await waitFor(() => expect(screen.getByDisplayValue('$metric')).toBeInTheDocument());
    await userEvent.click(document.getElementById('gpufleet-agg')!);
    expect(await screen.findByText('p99')).toBeInTheDocument();
    expect(screen.getByText('rate')).toBeInTheDocument();
  });

  it('ranks only gauges in top mode', async () => {
    setup({ refId: 'A', queryType: 'top', metric: 'gpu_util', agg: 'avg' });
    await waitFor(() => expect(screen.getByDisplayValue('gpu_util')).toBeInTheDocument());
    await userEvent.click(document.getElementById('gpufleet-metric')!);
    await userEvent.clear(document.getElementById('gpufleet-metric')!);
    expect(await screen.findByRole('option', { name: /gpu_util/ })).toBeInTheDocument();
    expect(screen.queryByRole('option', { name: /energy_mj/ })).not.toBeInTheDocument();
  });

  it('groups by dimensions', async () => {
    const { onChange } = setup({
      refId: 'A',
      queryType: 'series',
      metric: 'gpu_util',
      agg: 'avg',
      groupBy: ['cluster'],
    });
    await pick('gpufleet-group-by', 'pool');
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ groupBy: ['cluster', 'pool'] }));
  });

  it('adds a filter and offers the dimension’s known values', async () => {
    const { onChange, rerender, ds } = setup({ refId: 'A', metric: 'gpu_util', agg: 'avg' });
    await userEvent.click(screen.getByLabelText('add filter'));
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ filters: [{ dim: 'cluster', values: [] }] }));
    const q = onChange.mock.lastCall[0] as GpuQuery;
    rerender(
      <QueryEditor query={q} onChange={onChange} onRunQuery={jest.fn()} datasource={ds as unknown as DataSource} />
    );
    await waitFor(() => expect(ds.labels).toHaveBeenCalledWith('cluster'));
    await pick('gpufleet-filter-values-0', 'west');
    expect(onChange).toHaveBeenLastCalledWith(
      expect.objectContaining({ filters: [{ dim: 'cluster', values: ['west'] }] })
    );
  });

  it('takes a template variable as a filter value', async () => {
    const { onChange } = setup({
      refId: 'A',
      metric: 'gpu_util',
      agg: 'avg',
      filters: [{ dim: 'node', values: ['node-1'] }],
    });
    await userEvent.type(document.getElementById('gpufleet-filter-values-0')!, '$nodes');
    // What was typed is offered first, as a custom value.
    await userEvent.click(await screen.findByRole('option', { name: /\$nodes/ }));
    expect(onChange).toHaveBeenLastCalledWith(
      expect.objectContaining({ filters: [{ dim: 'node', values: ['node-1', '$nodes'] }] })
    );
  });

  it('shows the SQL the backend compiled, and its error when it refuses', async () => {
    const ds = fakeDS();
    const { rerender } = setup({ refId: 'A', metric: 'gpu_util', agg: 'avg' }, ds);
    expect(await screen.findByLabelText('generated SQL', {}, { timeout: 2000 })).toHaveTextContent(
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
    expect(await screen.findByRole('alert', {}, { timeout: 2000 })).toHaveTextContent(
      '"nope" is not a gpu_samples metric'
    );
  });

  it('ranks GPUs in top mode with an order and a count', async () => {
    const { onChange, onRunQuery } = setup({ refId: 'A', queryType: 'top', metric: 'gpu_util', agg: 'avg' });
    expect(screen.queryByText('Group by')).not.toBeInTheDocument();
    await userEvent.click(screen.getByText('Lowest'));
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ order: 'asc' }));
    fireEvent.change(document.getElementById('gpufleet-limit')!, { target: { value: '25' } });
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ limit: 25 }));
    fireEvent.blur(document.getElementById('gpufleet-limit')!);
    expect(onRunQuery).toHaveBeenCalled();
  });

  it('switches to raw SQL and runs what was typed', async () => {
    const { onChange, rerender, ds } = setup({ refId: 'A', metric: 'gpu_util', agg: 'avg' });
    await userEvent.click(screen.getByRole('radio', { name: 'SQL' }));
    const q = onChange.mock.lastCall[0] as GpuQuery;
    expect(q.queryType).toBe('sql');
    const onRunQuery = jest.fn();
    rerender(
      <QueryEditor query={q} onChange={onChange} onRunQuery={onRunQuery} datasource={ds as unknown as DataSource} />
    );
    expect(screen.getByText(/\$__timeFilter\(col\)/)).toBeInTheDocument();
    const editor = screen.getByLabelText('SQL editor');
    fireEvent.blur(editor, { target: { value: 'SELECT count() FROM gpufleet.gpu_samples WHERE $__timeFilter(time)' } });
    expect(onChange).toHaveBeenLastCalledWith(
      expect.objectContaining({ rawSql: 'SELECT count() FROM gpufleet.gpu_samples WHERE $__timeFilter(time)' })
    );
    expect(onRunQuery).toHaveBeenCalled();
  });
});
