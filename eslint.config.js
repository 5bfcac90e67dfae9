// The project's one lint setup: ESLint's recommended rules plus typescript-eslint's, for every .ts file.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'data/**', 'dashboard/vendor/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': ['error', { allow: ['error'] }],
    },
  },
  {
    files: ['scripts/**', 'bench/**', 'harness/**', 'test/**'],
    rules: { 'no-console': 'off' },
  },
  {
    // Aedes's internals stay behind broker/aedes-adapter.ts, which says why each reach-in is needed.
    files: ['broker/**/*.ts'],
    ignores: ['broker/aedes-adapter.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        { selector: 'MemberExpression[property.name=/^_/]', message: "A private field (Aedes's?): reach it through broker/aedes-adapter.ts, saying why." },
        { selector: 'TSAsExpression > TSAsExpression.expression', message: 'A double cast hides a reach-in: put it in broker/aedes-adapter.ts, saying why.' },
        { selector: 'TSAsExpression > TSAnyKeyword', message: "A cast to any hides a reach-in: put it in broker/aedes-adapter.ts, saying why." },
        { selector: 'AssignmentExpression > MemberExpression.left[property.name=/^(write|writev|end|emit|published)$/]', message: 'A runtime patch: put it in broker/aedes-adapter.ts, saying why.' },
        { selector: 'MemberExpression[object.property.name="conn"][property.name=/^(write|writev|cork|uncork|end|destroy|pipe)$/]', message: "Writing on Aedes's connection bypasses it: use broker/aedes-adapter.ts." },
      ],
      'no-restricted-imports': ['error', { paths: [{ name: '../lib/wire.js', message: "Aedes's connections are coalesced in broker/aedes-adapter.ts (handleTcp)." }] }],
    },
  },
  {
    // The dashboard is plain browser JavaScript, served as is (no build step).
    files: ['dashboard/**/*.js'],
    languageOptions: {
      globals: { window: 'readonly', document: 'readonly', location: 'readonly', fetch: 'readonly', TextDecoder: 'readonly', getComputedStyle: 'readonly', ResizeObserver: 'readonly' },
    },
  },
);
