#!/usr/bin/env bash
# Walk one case through the running system (after `make run`): a community
# organisation in Piura registers an unaccompanied adolescent girl; the referral
# service routes her case; the special protection unit is told by e-mail and SMS,
# acknowledges and accepts; the deadlines and messages follow.
set -euo pipefail
# shellcheck source=deploy/local/env.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/env.sh"
INTAKE=http://127.0.0.1:8001 REFERRAL=http://127.0.0.1:8002
OWNER="Authorization: Bearer demo-key-ong-amanecer"
UPE="Authorization: Bearer demo-key-upe-piura"
now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
birth="$(date -u -d '15 years ago - 40 days' +%Y-%m-%d)"

echo "1. ong-amanecer registers a case (POST $INTAKE/v1/cases)"
receipt="$(curl -fsS "$INTAKE/v1/cases" -H "$OWNER" -H 'Content-Type: application/json' -d @- <<JSON
{"external_id": "DEMO-$RANDOM$RANDOM",
 "child": {"given_names": "Daniela", "family_names": "Rojas", "birth_date": "$birth", "sex": "female",
           "nationality": "VE", "languages": ["es"]},
 "location": {"country": "PE", "region": "PE-PIU", "district": "Veintiséis de Octubre"},
 "unaccompanied": true,
 "concerns": ["physical_violence", "gender_based_violence", "irregular_migration_status"],
 "needs": ["special_protection", "psychosocial_support", "legal_aid_migration"],
 "consent": {"basis": "consent", "scope": "all_referral_services", "given_by": "child", "recorded_at": "$now"},
 "caseworker": {"id": "cw-rosa", "name": "Rosa Huamán", "phone": "+51987654321",
                "email": "rosa.huaman@amanecer.example.org", "language": "es"}}
JSON
)"
echo "$receipt"
case_id="$("$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["case_id"])' <<<"$receipt")"

echo; echo "2. referrals routed for the case (GET $REFERRAL/v1/referrals?direction=outgoing)"
referral=""
for _ in $(seq 1 50); do
  listing="$(curl -fsS "$REFERRAL/v1/referrals?direction=incoming&case_id=$case_id" -H "$UPE")"
  referral="$("$PYTHON" -c 'import json,sys; items=json.load(sys.stdin).get("items", []); print(items[0]["referral_id"] if items else "")' <<<"$listing")"
  [[ -n "$referral" ]] && break
  sleep 0.2
done
[[ -n "$referral" ]] || die "no referral reached upe-piura" "$LOCAL_DIR/logs/referral.log"
curl -fsS "$REFERRAL/v1/referrals?direction=outgoing&case_id=$case_id" -H "$OWNER" | "$PYTHON" -m json.tool

echo; echo "3. upe-piura acknowledges and accepts referral $referral"
curl -fsS -X POST "$REFERRAL/v1/referrals/$referral/acknowledge" -H "$UPE" -o /dev/null
curl -fsS -X POST "$REFERRAL/v1/referrals/$referral/accept" -H "$UPE" -o /dev/null
curl -fsS "$REFERRAL/v1/referrals/$referral" -H "$UPE" | "$PYTHON" -m json.tool

echo; echo "4. the events of this case on Kafka"
"$PYTHON" "$REPO_ROOT/deploy/local/tail_topic.py" protection.referrals.v1 --last 50 \
  | "$PYTHON" -c "
import json, sys
text = sys.stdin.read()
decoder, pos = json.JSONDecoder(), 0
while pos < len(text):
    text_rest = text[pos:].lstrip()
    if not text_rest: break
    record, used = decoder.raw_decode(text_rest)
    pos = len(text) - len(text_rest) + used
    if record['key'] == '$case_id':
        v = record['value']
        print(record['headers']['ce_type'], v.get('to_agency_id'), v.get('service_type'), v.get('state'))
"
echo; echo "5. messages sent to caseworkers: e-mails in $LOCAL_DIR/mail/new, SMS in $LOCAL_DIR/sms"
sleep 1
ls -t "$LOCAL_DIR/mail/new" 2>/dev/null | head -3 || true
