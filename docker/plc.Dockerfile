# The PLC directory (did:plc) from npm, backed by PostgreSQL (DATABASE_URL), listening on PORT.
FROM node:22-slim
WORKDIR /plc
RUN npm install --omit=dev --no-audit --no-fund @did-plc/server@0.0.1 && npm cache clean --force
USER node
EXPOSE 2582
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s \
    CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||2582)+'/_health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "node_modules/@did-plc/server/dist/bin.js"]
