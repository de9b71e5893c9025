import { useEffect, useState } from 'react';
import { Combobox, ComboboxOption, IconButton, InlineField, MultiCombobox, Stack } from '@grafana/ui';

import { DIMS, Filter, Labels } from '../types';

type LabelsFn = (dim: string) => Promise<Labels>;

interface Props {
  filters: Filter[];
  onChange: (filters: Filter[]) => void;
  /** labels lists a dimension's known values for the value picker. */
  labels: LabelsFn;
  /** dims are the dimensions a filter may take (DIMS unless told). */
  dims?: string[];
}

function FilterRow({
  filter,
  onChange,
  onRemove,
  labels,
  index,
  dims,
}: {
  filter: Filter;
  onChange: (f: Filter) => void;
  onRemove: () => void;
  labels: LabelsFn;
  index: number;
  dims: string[];
}) {
  const [known, setKnown] = useState<Labels>({ values: [], truncated: false });
  useEffect(() => {
    let live = true;
    labels(filter.dim)
      .then((v) => live && setKnown(v))
      .catch(() => live && setKnown({ values: [], truncated: false }));
    return () => {
      live = false;
    };
  }, [filter.dim, labels]);
  const options: Array<ComboboxOption<string>> = [...new Set([...known.values, ...filter.values])].map((v) => ({
    label: v,
    value: v,
  }));
  return (
    <Stack gap={1} alignItems="center">
      <Combobox
        id={`gpufleet-filter-dim-${index}`}
        width={16}
        options={dims.map((d) => ({ label: d, value: d }))}
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
      {known.truncated && (
        <span role="note">
          the first {known.values.length.toLocaleString('en')} {filter.dim} values; type one not listed
        </span>
      )}
    </Stack>
  );
}

/** FiltersEditor edits the dimension filters of a builder query. */
export function FiltersEditor({ filters, onChange, labels, dims = DIMS }: Props) {
  return (
    <InlineField label="Filters" labelWidth={14} tooltip="keep rows whose dimension is one of the values">
      <Stack direction="column" gap={1}>
        {filters.map((f, i) => (
          <FilterRow
            key={i}
            index={i}
            filter={f}
            labels={labels}
            dims={dims}
            onChange={(nf) => onChange(filters.map((x, j) => (j === i ? nf : x)))}
            onRemove={() => onChange(filters.filter((_, j) => j !== i))}
          />
        ))}
        <IconButton
          name="plus"
          aria-label="add filter"
          onClick={() => onChange([...filters, { dim: dims[0], values: [] }])}
        />
      </Stack>
    </InlineField>
  );
}
