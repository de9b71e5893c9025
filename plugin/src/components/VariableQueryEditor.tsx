import { Combobox, InlineField, Input } from '@grafana/ui';

import { DIMS, VariableQuery } from '../types';
import { parseVariableQuery } from '../variableQuery';

interface Props {
  // A string is how variables saved by the text form arrive.
  query: VariableQuery | string;
  onChange: (query: VariableQuery) => void;
}

/** VariableQueryEditor picks the dimension whose values a template variable lists, optionally in one cluster. */
export function VariableQueryEditor({ query, onChange }: Props) {
  // The text form ("node?cluster=$cluster") becomes the structured one on the first edit.
  const base: VariableQuery = typeof query === 'string' ? { refId: 'variable', ...parseVariableQuery(query) } : query;
  const q: VariableQuery = { ...base, dim: base?.dim || 'node' };
  return (
    <>
      <InlineField label="Values of" labelWidth={16} tooltip="the distinct values seen in the last 7 days">
        <Combobox
          id="gpufleet-variable-dim"
          width={24}
          options={DIMS.map((d) => ({ label: d, value: d }))}
          value={q.dim}
          onChange={(v) => {
            onChange({ ...q, dim: v.value });
          }}
        />
      </InlineField>
      <InlineField label="In cluster" labelWidth={16} tooltip="optional; may be a variable such as $cluster">
        <Input
          id="gpufleet-variable-cluster"
          width={24}
          value={q.cluster ?? ''}
          placeholder="any"
          onChange={(e) => {
            onChange({ ...q, cluster: e.currentTarget.value || undefined });
          }}
        />
      </InlineField>
    </>
  );
}
