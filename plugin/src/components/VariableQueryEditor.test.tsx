import { fireEvent, render, screen } from '@testing-library/react';

import { user } from '../testing';
import { VariableQueryEditor } from './VariableQueryEditor';

/** option is an open menu's option by its text: a text match, cheaper than a role query's accessible names. */
function option(text: string): HTMLElement {
  return screen.getByText(text, { selector: '[role="option"] *, [role="option"]' });
}

describe('VariableQueryEditor', () => {
  it('picks the dimension', async () => {
    const onChange = jest.fn();
    const u = user();
    render(<VariableQueryEditor query={{ refId: 'V', dim: 'node' }} onChange={onChange} />);
    expect(screen.getByDisplayValue('node')).toBeInTheDocument();
    await u.click(document.getElementById('gpufleet-variable-dim')!);
    await u.click(option('pool'));
    expect(onChange).toHaveBeenLastCalledWith({ refId: 'V', dim: 'pool' });
  });

  it('takes an optional cluster', () => {
    const onChange = jest.fn();
    render(<VariableQueryEditor query={{ refId: 'V', dim: 'node' }} onChange={onChange} />);
    fireEvent.change(screen.getByPlaceholderText('any'), { target: { value: '$cluster' } });
    expect(onChange).toHaveBeenLastCalledWith({ refId: 'V', dim: 'node', cluster: '$cluster' });
  });

  it('reads a saved text query', () => {
    render(<VariableQueryEditor query="rack" onChange={jest.fn()} />);
    expect(screen.getByDisplayValue('rack')).toBeInTheDocument();
  });

  it('reads a saved text query with a cluster, and saves it structured', async () => {
    const onChange = jest.fn();
    const u = user();
    render(<VariableQueryEditor query="node?cluster=$cluster" onChange={onChange} />);
    expect(screen.getByDisplayValue('node')).toBeInTheDocument();
    expect(screen.getByDisplayValue('$cluster')).toBeInTheDocument();
    await u.click(document.getElementById('gpufleet-variable-dim')!);
    await u.click(option('gpu'));
    expect(onChange).toHaveBeenLastCalledWith({ refId: 'variable', dim: 'gpu', cluster: '$cluster' });
  });
});
