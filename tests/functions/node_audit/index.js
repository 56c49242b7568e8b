// A CloudEvent function that records each audit-log event it receives, one JSON line per
// call, in the file named by the OUTPUT_FILE environment variable.
const fs = require('fs');
const functions = require('@google-cloud/functions-framework');

functions.cloudEvent('onAudit', (event) => {
  const payload = (event.data && event.data.protoPayload) || {};
  const record = {
    id: event.id,
    type: event.type,
    source: event.source,
    subject: event.subject,
    methodName: payload.methodName,
    serviceName: payload.serviceName,
  };
  fs.appendFileSync(process.env.OUTPUT_FILE, JSON.stringify(record) + '\n');
  console.log(`audit event ${payload.methodName}`);
});
