import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';
import prettierRecommended from 'eslint-plugin-prettier/recommended';
import globals from 'globals';
import jupyterPlugin from '@jupyter/eslint-plugin';
import { readFileSync } from 'node:fs';
import { URL } from 'node:url';

// Prettier finds its settings (package.json's "prettier") from each file's folder up,
// which misses the widget's files outside this one: hand it them for those.
const prettierOptions = JSON.parse(
  readFileSync(new URL('./package.json', import.meta.url), 'utf8')
).prettier;

// The extension template's config, plus a block for the notebook widget's modules
// (scatter_magics/notebook/static/*.js): plain JavaScript that the browser runs as written
// and this extension imports, so no compiler checks it but this. ESLint lints nothing
// outside the directory it takes as base, so package.json's `eslint:static` script runs
// it from the repository's root with this file as --config.
export default defineConfig([
  {
    ignores: [
      'node_modules',
      'dist',
      'coverage',
      '**/*.js',
      '!scatter_magics/notebook/static/*.js',
      '**/*.d.ts',
      '.venv'
    ]
  },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    plugins: {
      jupyter: jupyterPlugin
    }
  },
  jupyterPlugin.configs.recommended,
  {
    files: ['**/*.ts', '**/*.tsx'],
    languageOptions: {
      globals: {
        ...globals.browser,
        ...globals.es2015,
        ...globals.node
      },
      parserOptions: {
        project: 'tsconfig.json',
        sourceType: 'module'
      }
    },
    rules: {
      '@typescript-eslint/naming-convention': [
        'error',
        {
          selector: 'interface',
          format: ['PascalCase'],
          custom: {
            regex: '^I[A-Z]',
            match: true
          }
        }
      ],
      '@typescript-eslint/no-unused-vars': ['warn', { args: 'none' }],
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-namespace': 'off',
      '@typescript-eslint/no-use-before-define': 'off',
      '@typescript-eslint/quotes': [
        'error',
        'single',
        { avoidEscape: true, allowTemplateLiterals: false }
      ],
      curly: ['error', 'all'],
      eqeqeq: 'error',
      'prefer-arrow-callback': 'error'
    }
  },
  {
    files: ['scatter_magics/notebook/static/*.js'],
    languageOptions: {
      globals: globals.browser,
      sourceType: 'module'
    },
    rules: {
      curly: ['error', 'all'],
      eqeqeq: 'error',
      'prefer-arrow-callback': 'error',
      'prettier/prettier': ['error', prettierOptions],
      // An anywidget has no JupyterLab translator to wrap its strings with.
      'jupyter/no-untranslated-string': 'off'
    }
  },
  prettierRecommended
]);
