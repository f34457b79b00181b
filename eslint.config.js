// Lint rules: recommended sets, plus the house rules from ../shared/STYLE.md that a linter can see.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/**', '.runtime/**', '.data/**', 'dist/**', 'bench/results/**', 'clients/*/dist/**', 'clients/*/node_modules/**', 'clients/*/proto/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      'no-empty': ['error', { allowEmptyCatch: false }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-syntax': ['error', { selector: 'ExportDefaultDeclaration', message: 'No default exports.' }],
    },
  },
  {
    // Only hsm/ may talk to PKCS#11.
    files: ['daemon/src/**/*.ts'],
    ignores: ['daemon/src/hsm/**'],
    rules: {
      'no-restricted-imports': ['error', { paths: ['pkcs11js', 'graphene-pk11'] }],
    },
  },
);
