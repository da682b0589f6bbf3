// ESLint 9 flat config: the apps' JavaScript (CommonJS, WeChat globals) and their WXML templates
// (eslint-plugin-wxml: missing wx:key, bad {{ }}, duplicate attributes, unclosed tags).
import js from '@eslint/js'
import globals from 'globals'
import wxml from 'eslint-plugin-wxml'
import wxmlParser from '@wxml/parser'

const wechat = { wx: 'readonly', App: 'readonly', Page: 'readonly', Component: 'readonly', Behavior: 'readonly', getApp: 'readonly', getCurrentPages: 'readonly' }

export default [
  { ignores: ['node_modules/**', 'miniprogram_npm/**', 'types/**', '**/*.d.ts'] },
  {
    files: ['**/*.js'],
    ...js.configs.recommended,
    languageOptions: { ecmaVersion: 2020, sourceType: 'commonjs', globals: { ...wechat, ...globals.es2020, console: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', module: 'writable', require: 'readonly' } },
    rules: { ...js.configs.recommended.rules, 'no-unused-vars': ['error', { args: 'none', caughtErrors: 'none' }], eqeqeq: ['error', 'smart'], 'no-var': 'error', 'prefer-const': 'error' },
  },
  {
    files: ['test/**/*.js', 'scripts/**/*.js'],
    languageOptions: { ecmaVersion: 2022, sourceType: 'commonjs', globals: { ...globals.node, ...wechat, document: 'readonly', window: 'readonly' } },
  },
  {
    files: ['**/*.wxml'],
    plugins: { wxml },
    languageOptions: { parser: wxmlParser },
    rules: {
      'wxml/report-wxml-syntax-error': 'error',
      'wxml/report-interpolation-error': 'error',
      'wxml/report-wxs-syntax-error': 'error',
      'wxml/wx-key': 'error',
      'wxml/no-dot-this-in-wx-key': 'error',
      'wxml/no-duplicate-attributes': 'error',
      'wxml/no-inconsistent-tagname': 'error',
      'wxml/no-unexpected-string-bool': 'error',
      'wxml/no-wx-for-with-wx-else': 'error',
      'wxml/no-vue-directive': 'error',
      'wxml/no-const-and-let-in-wxs': 'error',
    },
  },
]
