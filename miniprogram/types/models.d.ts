// The API shapes the apps read, named from the types generated out of docs/openapi.json
// (types/api.d.ts, `npm run types`). The view functions and pages are typed with these in JSDoc,
// so `tsc` fails when a field the apps read is not in the server's documented responses.
import type { components } from './api'

type S = components['schemas']

export type Task = S['HallTaskOut']
export type PublisherTask = S['PublisherTaskOut']
export type TaskDetail = S['TaskDetailOut']
export type Order = S['OrderOut']
export type PublisherOrder = S['PublisherOrderOut']
export type HallTask = S['HallTaskOut']
export type PublisherRecord = S['PublisherRecord']
export type WorkerRecord = S['WorkerRecord']
export type Block = S['BlockOut']
export type TaskOrder = S['ReviewedOrderOut']
export type User = S['UserOut']
export type Login = S['LoginOut']
export type Wallet = S['WalletOut']
export type Posting = S['PostingOut']
export type Withdrawal = S['WithdrawalOut']
export type Invitations = S['InvitationsOut']
export type Recharge = S['RechargeOut']
export type CreatedRecharge = S['CreatedRechargeOut']
export type Config = S['ConfigOut']
export type Upload = S['UploadOut']
export type HallTaskPage = S['HallTaskPage']
export type PublisherTaskPage = S['PublisherTaskPage']
export type OrderPage = S['OrderPage']
export type PostingPage = S['PostingPage']
export type WithdrawalPage = S['WithdrawalPage']
export type BlockPage = S['BlockPage']
/** The page schema (one of the `*Page` above) whose items are T. */
export type Page<T> = { [K in keyof S & `${string}Page`]: S[K] extends { items: T[] } ? S[K] : never }[keyof S & `${string}Page`]
