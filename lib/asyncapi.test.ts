// The AsyncAPI document without a running system: valid for the AsyncAPI project's own parser, its
// examples valid against its schemas, its operations following whatever ACL it is given, and
// nothing personal in the public namespace. test/asyncapi.test.ts checks it against real traffic.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Parser } from '@asyncapi/parser';
import { Acl } from '../broker/acl.js';
import { accessOf, buildAsyncApi, catalogueEvents, channels, asyncApiFor } from './asyncapi.js';
import { createEvent } from './events.js';
import { PUBLIC_ROOT, orderCreated, stockLevel } from './topics.js';
import { payloadValidator } from '../test/support/payloads.js';

const doc = asyncApiFor();

describe('the AsyncAPI document', () => {
  it('is valid for @asyncapi/parser, without a warning', async () => {
    const { document, diagnostics } = await new Parser().parse(JSON.stringify(doc));
    assert.deepEqual(
      diagnostics.map((d) => `${d.code} ${d.path.join('/')}: ${d.message}`),
      [],
    );
    assert.ok(document);
    assert.equal(document.version(), '3.1.0');
    assert.equal(document.channels().length, channels().length);
    // Every operation reaches its channel and message once the parser has resolved the references.
    for (const op of document.operations().all()) {
      assert.equal(op.channels().length, 1, op.id());
      assert.ok(op.messages().all()[0]?.payload(), `${op.id()} has a payload schema`);
    }
  });

  it('has a channel for every event of the catalogue, and every example is valid against its schema', () => {
    const ids = catalogueEvents().map((e) => e.id);
    for (const id of ids) assert.ok(id in doc.channels, id);
    const ajv = payloadValidator();
    for (const [name, message] of Object.entries(doc.components.messages)) {
      const validate = ajv.compile(message.payload);
      for (const example of message.examples) assert.ok(validate(example.payload), `${name}: ${ajv.errorsText(validate.errors)}`);
    }
  });

  it("validates a real event of the catalogue, and refuses another event's or a broken one", () => {
    const validate = payloadValidator().compile(doc.components.messages.orderCreated!.payload);
    const event = createEvent(orderCreated, orderCreated.example, { source: '/woodytoys/orders' });
    assert.ok(validate(JSON.parse(JSON.stringify(event))), 'a CloudEvent as the orders service makes it');
    assert.ok(validate({ ...event, traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' }), 'extension attributes may ride along');
    assert.ok(!validate({ ...event, type: 'woodytoys.order.confirmed' }), 'another type');
    assert.ok(!validate({ ...event, data: { ...event.data, items: [] } }), 'an order without items');
    assert.ok(!validate({ ...event, specversion: '0.3' }), 'another CloudEvents version');
  });

  it('keeps the public namespace free of personal data, schemas and examples alike', () => {
    const text = (v: unknown) => JSON.stringify(v);
    const publicChannels = Object.entries(doc.channels).filter(([, c]) => c.address.startsWith(`${PUBLIC_ROOT}/`));
    assert.ok(publicChannels.length >= 5);
    for (const [id] of publicChannels) {
      const message = doc.components.messages[id]!;
      assert.doesNotMatch(text(message.payload), /"format":"email"|"customer"|"email"/, `${id} schema`);
      assert.doesNotMatch(text(message.examples), /@|"customer"/, `${id} example`);
    }
    // …while the private order events do carry the customer, and the viewer cannot read them.
    assert.match(text(doc.components.messages.orderCreated!.payload), /"customer"/);
    assert.ok(!('viewer_receive_orderCreated' in doc.operations));
  });

  it("tells the displays' login how much a session keeps and how many sessions it keeps (its '#@ queue', '#@ sessions' and '#@ filters' rules), and no service's", () => {
    const tag = (name: string) => doc.info.tags.find((t) => t.name === name)!.description;
    assert.match(tag('viewer'), /keeps at most 1000 messages not yet acknowledged/);
    assert.match(tag('viewer'), /keeps at most 100 persistent sessions: one more ends the one whose client has been away the longest/);
    assert.match(tag('viewer'), /Each client holds at most 100 topic filters at once/);
    assert.doesNotMatch(tag('orders'), /keeps at most/);
  });

  it('marks retained channels and QoS in the MQTT bindings', () => {
    const send = (id: string) => Object.entries(doc.operations).find(([key]) => key.endsWith(`_send_${id}`))![1].bindings.mqtt;
    assert.deepEqual(send('stockLevel'), { qos: 1, retain: true, bindingVersion: '0.2.0' });
    assert.deepEqual(send('orderCreated'), { qos: 1, retain: false, bindingVersion: '0.2.0' });
    assert.deepEqual(send('statsProcess'), { qos: 0, retain: true, bindingVersion: '0.2.0' });
    assert.equal(stockLevel.retain, true);
  });
});

describe('operations come from the ACL', () => {
  // A smaller ACL than the repository's: the document follows it, with nothing restated.
  const acl = Acl.parse(`
user orders
#@ clientid orders orders-*
topic write woodytoys/orders/created
topic write woodytoys/public/stats/orders
topic write woodytoys/public/orders/#
topic read woodytoys/orders/confirmed

user stock
#@ clientid stock stock-*
#@ group stock woodytoys/orders/#
topic read woodytoys/orders/created
topic write woodytoys/public/stock/levels/+
topic write woodytoys/stock/#
topic write woodytoys/deadletter/#
topic write woodytoys/public/catalog/#

user worker
#@ clientid worker-*
#@ group order-workers woodytoys/stock/reserved
topic read woodytoys/stock/reserved
topic write woodytoys/orders/#
topic write woodytoys/public/stats/#

user erp
#@ clientid erp
topic write woodytoys/public/stats/erp

user display
#@ clientid display-*
topic read woodytoys/public/stock/#
`);

  it('gives each user exactly what its rules allow, with its shared groups', () => {
    const ops = buildAsyncApi({ acl }).operations;
    const of = (user: string) => Object.keys(ops).filter((k) => k.startsWith(`${user}_`)).sort();
    assert.deepEqual(of('display'), ['display_receive_stockLevel']);
    assert.deepEqual(of('orders'), ['orders_receive_orderConfirmed', 'orders_send_orderCreated', 'orders_send_publicOrderStatus', 'orders_send_statsProcess']);
    assert.equal(ops.stock_receive_orderCreated?.['x-shared-subscription']?.filter, '$share/stock/woodytoys/orders/created');
    assert.equal(ops.worker_receive_stockReserved?.['x-shared-subscription']?.group, 'order-workers');
    assert.equal(ops.orders_receive_orderConfirmed?.['x-shared-subscription'], undefined, 'a plain subscription');
    // The broker's own figures have no ACL user; the workers' figures are theirs.
    assert.ok(ops.broker_send_statsProcess);
    assert.ok(ops.worker_send_statsWorker);
  });

  it('refuses to document a channel that nobody may publish', () => {
    const narrow = Acl.parse('user orders\n#@ clientid orders\ntopic write woodytoys/orders/created\n');
    assert.throws(() => accessOf(narrow), /no user of the ACL may publish/);
  });
});
