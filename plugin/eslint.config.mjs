import baseConfig from './.config/eslint.config.mjs';

export default [
  {
    ignores: ['**/node_modules/', '**/dist/', '**/coverage/', '.config/', '*.config.js', '**/.eslintcache'],
  },
  ...baseConfig,
];
