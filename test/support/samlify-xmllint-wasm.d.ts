declare module '@authenio/samlify-xmllint-wasm';
