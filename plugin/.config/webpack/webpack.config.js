// The plugin bundle, after @grafana/create-plugin's webpack config: an AMD module.js that takes
// React, RxJS and the @grafana packages from Grafana at run time (externals), plugin.json with
// %VERSION% and %TODAY% filled in, and the logo. Written in plain CommonJS so that it loads on
// Node 20 without a TypeScript loader. The Go backend binaries in dist/ survive a rebuild.
const path = require('path');
const CopyWebpackPlugin = require('copy-webpack-plugin');
const ReplaceInFileWebpackPlugin = require('replace-in-file-webpack-plugin');
const TerserPlugin = require('terser-webpack-plugin');

const root = path.resolve(__dirname, '..', '..');
const pluginJson = require(path.join(root, 'src', 'plugin.json'));
const { version } = require(path.join(root, 'package.json'));

const externals = [
  'lodash',
  'jquery',
  'moment',
  'slate',
  'emotion',
  '@emotion/react',
  '@emotion/css',
  'prismjs',
  'slate-plain-serializer',
  '@grafana/slate-react',
  'react',
  'react/jsx-runtime',
  'react/jsx-dev-runtime',
  'react-dom',
  'react-redux',
  'redux',
  'rxjs',
  'i18next',
  'react-router',
  'd3',
  'angular',
  /^@grafana\/ui/i,
  /^@grafana\/runtime/i,
  /^@grafana\/data/i,
  // Legacy SDK imports ("grafana/app/…") resolve to Grafana's own modules.
  ({ request }, callback) =>
    request && request.startsWith('grafana/') ? callback(undefined, request.slice(8)) : callback(),
];

module.exports = (env = {}) => ({
  context: path.join(root, 'src'),
  devtool: env.production ? 'source-map' : 'eval-source-map',
  entry: { module: './module.ts' },
  externals,
  mode: env.production ? 'production' : 'development',
  module: {
    rules: [
      {
        exclude: /node_modules/,
        test: /\.[tj]sx?$/,
        use: {
          loader: 'swc-loader',
          options: {
            jsc: {
              baseUrl: path.join(root, 'src'),
              target: 'es2015',
              parser: { syntax: 'typescript', tsx: true, decorators: false, dynamicImport: true },
              transform: { react: { runtime: 'automatic' } },
            },
          },
        },
      },
      { test: /\.(png|jpe?g|gif|svg)$/, type: 'asset/resource', generator: { filename: '[file]' } },
    ],
  },
  optimization: {
    minimize: Boolean(env.production),
    minimizer: [new TerserPlugin({ terserOptions: { compress: { drop_console: ['log', 'info'] } } })],
  },
  output: {
    // Keep the backend binaries (gpx_<id>_<os>_<arch>) make plugin-backend put here (create-plugin's pattern).
    clean: { keep: /(.*?_(amd64|arm(64)?)(\.exe)?|go_plugin_build_manifest)$/ },
    filename: '[name].js',
    library: { type: 'amd' },
    path: path.join(root, 'dist'),
    publicPath: `public/plugins/${pluginJson.id}/`,
    uniqueName: pluginJson.id,
  },
  plugins: [
    new CopyWebpackPlugin({
      patterns: [
        { from: 'plugin.json', to: '.' },
        { from: '../README.md', to: '.' },
        { from: 'img/**/*', to: '.' },
      ],
    }),
    new ReplaceInFileWebpackPlugin([
      {
        dir: path.join(root, 'dist'),
        files: ['plugin.json', 'README.md'],
        rules: [
          { search: /%VERSION%/g, replace: version },
          { search: /%TODAY%/g, replace: new Date().toISOString().substring(0, 10) },
          { search: /%PLUGIN_ID%/g, replace: pluginJson.id },
        ],
      },
    ]),
  ],
  resolve: {
    extensions: ['.js', '.jsx', '.ts', '.tsx'],
    modules: [path.join(root, 'src'), 'node_modules'],
  },
});
