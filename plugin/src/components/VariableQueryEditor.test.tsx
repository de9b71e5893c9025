import { fireEvent, render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';

import { VariableQueryEditor } from './VariableQueryEditor';

describe('VariableQueryEditor', () => {
  it('picks the dimension and an optional cluster', async () => {
    const onChange = jest.fn();
    render(<VariableQueryEditor query={{ refId: 'V', dim: 'node' }} onChange={onChange} />);
    expect(screen.getByDisplayValue('node')).toBeInTheDocument();
    await userEvent.click(document.getElementById('gpufleet-variable-dim')!);
    await userEvent.click(await screen.findByRole('option', { name: 'pool' }));
    expect(onChange).toHaveBeenLastCalledWith({ refId: 'V', dim: 'pool' });
    fireEvent.change(screen.getByPlaceholderText('any'), { target: { value: '$cluster' } });
    expect(onChange).toHaveBeenLastCalledWith({ refId: 'V', dim: 'node', cluster: '$cluster' });
  });

  it('reads a saved text query', () => {
    render(<VariableQueryEditor query="rack" onChange={jest.fn()} />);
    expect(screen.getByDisplayValue('rack')).toBeInTheDocument();
  });

  it('reads a saved text query with a cluster, and saves it structured', async () => {
    const onChange = jest.fn();
    render(<VariableQueryEditor query="node?cluster=$cluster" onChange={onChange} />);
    expect(screen.getByDisplayValue('node')).toBeInTheDocument();
    expect(screen.getByDisplayValue('$cluster')).toBeInTheDocument();
    await userEvent.click(document.getElementById('gpufleet-variable-dim')!);
    await userEvent.click(await screen.findByRole('option', { name: 'gpu' }));
    expect(onChange).toHaveBeenLastCalledWith({ refId: 'variable', dim: 'gpu', cluster: '$cluster' });
  });
});
