import { useEffect, useState } from 'react';
import { Combobox, ComboboxOption, IconButton, InlineField, MultiCombobox, Stack } from '@grafana/ui';

import { DIMS, Filter } from '../types';

interface Props {
  filters: Filter[];
  onChange: (filters: Filter[]) => void;
  /** labels lists a dimension's known values for the value picker. */
  labels: (dim: string) => Promise<string[]>;
}

function FilterRow({
  filter,
  onChange,
  onRemove,
  labels,
  index,
}: {
  filter: Filter;
  onChange: (f: Filter) => void;
  onRemove: () => void;
  labels: (dim: string) => Promise<string[]>;
  index: number;
}) {
  const [known, setKnown] = useState<string[]>([]);
  useEffect(() => {
    let live = true;
    labels(filter.dim)
      .then((v) => live && setKnown(v))
      .catch(() => live && setKnown([]));
    return () => {
      live = false;
    };
  }, [filter.dim, labels]);
  const options: Array<ComboboxOption<string>> = [...new Set([...known, ...filter.values])].map((v) => ({
    label: v,
    value: v,
  }));
  return (
    <Stack gap={1} alignItems="center">
      <Combobox
        id={`gpufleet-filter-dim-${index}`}
        width={16}
        options={DIMS.map((d) => ({ label: d, value: d }))}
        value={filter.dim}
        onChange={(v) => onChange({ dim: v.value, values: [] })}
      />
      <span>in</span>
      <MultiCombobox
        id={`gpufleet-filter-values-${index}`}
        width="auto"
        minWidth={30}
        maxWidth={80}
        createCustomValue
        placeholder="values or $variable"
        options={options}
        value={filter.values}
        onChange={(vs) => onChange({ ...filter, values: vs.map((v) => v.value).filter(Boolean) })}
      />
      <IconButton name="trash-alt" aria-label={`remove filter ${index + 1}`} onClick={onRemove} />
    </Stack>
  );
}

/** FiltersEditor edits the dimension filters of a builder query. */
export function FiltersEditor({ filters, onChange, labels }: Props) {
  return (
    <InlineField label="Filters" labelWidth={14} tooltip="keep rows whose dimension is one of the values">
      <Stack direction="column" gap={1}>
        {filters.map((f, i) => (
          <FilterRow
            key={i}
            index={i}
            filter={f}
            labels={labels}
            onChange={(nf) => onChange(filters.map((x, j) => (j === i ? nf : x)))}
            onRemove={() => onChange(filters.filter((_, j) => j !== i))}
          />
        ))}
        <IconButton
          name="plus"
          aria-label="add filter"
          onClick={() => onChange([...filters, { dim: 'cluster', values: [] }])}
        />
      </Stack>
    </InlineField>
  );
}
