// Grafana's lint rules for plugins, as @grafana/create-plugin sets them up.
import grafanaConfig from '@grafana/eslint-config/flat.js';

export default [
  ...grafanaConfig,
  {
    rules: {
      'react/prop-types': 'off',
      'react/react-in-jsx-scope': 'off',
    },
  },
  {
    files: ['src/**/*.{ts,tsx}'],
    languageOptions: {
      parserOptions: {
        project: './tsconfig.json',
      },
    },
    rules: {
      '@typescript-eslint/no-deprecated': 'warn',
    },
  },
];
