// ajv as a subscriber would use it on the AsyncAPI document's payload schemas (JSON Schema draft 7,
// with the formats zod writes: uuid, date-time, email).
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';

export function payloadValidator(): Ajv {
  const ajv = new Ajv({ allErrors: true });
  addFormats.default(ajv);
  return ajv;
}
